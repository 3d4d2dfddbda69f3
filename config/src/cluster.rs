//! `cluster:` (DESIGN B11): optional state shared by several gateway replicas through Redis —
//! the service registry and the token buckets of `scope: global` rate limits. With no `store`
//! every replica keeps its state in process, exactly as without the block.

use crate::duration::Dur;
use crate::error::ConfigError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The environment variable that carries the store's password when the URL has none.
pub const PASSWORD_ENV: &str = "GOGATE_REDIS_PASSWORD";

/// `cluster:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClusterConfig {
    /// `""` (state in this process), `redis://[user:password@]host:port[/db]` or `rediss://`
    /// (TLS).
    pub store: String,
    /// Prefix of every key and channel, so several gateways can share one Redis.
    #[serde(alias = "key_prefix")]
    pub key_prefix: String,
    /// Registrations are seen by every replica.
    pub registry: bool,
    /// Rate limits with `scope: global` count across replicas.
    #[serde(alias = "rate_limit")]
    pub rate_limit: bool,
    /// Bound on each store operation on the request path.
    pub timeout: Dur,
    /// What a `scope: global` limit does while the store is slow or down.
    #[serde(alias = "on_store_down")]
    pub on_store_down: OnStoreDown,
    /// PEM file of the CA that signed a `rediss://` server's certificate; empty = the system's
    /// CA bundle. Relative to the config file's directory.
    #[serde(alias = "ca_file")]
    pub ca_file: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            store: String::new(),
            key_prefix: "gogate:".into(),
            registry: true,
            rate_limit: true,
            timeout: Dur(Duration::from_millis(50)),
            on_store_down: OnStoreDown::Local,
            ca_file: String::new(),
        }
    }
}

impl ClusterConfig {
    /// The parsed store, `None` without one (or with an invalid one, which validation reports).
    pub fn store_url(&self) -> Option<StoreUrl> {
        StoreUrl::parse(&self.store).ok()
    }

    /// Whether registrations go through the store.
    pub fn shares_registry(&self) -> bool {
        !self.store.is_empty() && self.registry
    }

    /// Whether `scope: global` limits go through the store.
    pub fn shares_rate_limits(&self) -> bool {
        !self.store.is_empty() && self.rate_limit
    }

    pub(crate) fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.store.is_empty() {
            if let Err(e) = StoreUrl::parse(&self.store) {
                errors.push(ConfigError::new("cluster.store", e));
            }
        }
        let t = self.timeout.get();
        if t < Duration::from_millis(1) || t > Duration::from_secs(10) {
            errors.push(ConfigError::new(
                "cluster.timeout",
                format!("{} is out of range; allowed 1ms to 10s", self.timeout),
            ));
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self.key_prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            errors.push(ConfigError::new(
                "cluster.keyPrefix",
                "must be 1 to 64 visible ASCII characters, e.g. \"gogate:\"",
            ));
        }
        if !self.ca_file.is_empty() && !self.store.starts_with("rediss://") {
            errors.push(ConfigError::new(
                "cluster.caFile",
                "only applies to a rediss:// (TLS) store",
            ));
        }
        errors
    }
}

/// `cluster.onStoreDown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreDown {
    /// Count in this replica's own bucket (the limit becomes per replica meanwhile).
    #[default]
    Local,
    /// Answer 503 while the store cannot be asked.
    Deny,
}

impl OnStoreDown {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreDown::Local => "local",
            OnStoreDown::Deny => "deny",
        }
    }
}

impl Serialize for OnStoreDown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OnStoreDown {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::parse_str(d, "local or deny", |text| {
            match text.trim().to_ascii_lowercase().as_str() {
                "local" => Ok(OnStoreDown::Local),
                "deny" => Ok(OnStoreDown::Deny),
                _ => Err(format!(
                    "invalid onStoreDown {text:?}; allowed: local, deny"
                )),
            }
        })
    }
}

/// `rateLimit.scope`: whose buckets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// This replica's own buckets.
    #[default]
    Local,
    /// The cluster store's (every replica shares them); local without a store.
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::parse_str(d, "local or global", |text| {
            match text.trim().to_ascii_lowercase().as_str() {
                "local" => Ok(Scope::Local),
                "global" => Ok(Scope::Global),
                _ => Err(format!("invalid scope {text:?}; allowed: local, global")),
            }
        })
    }
}

/// A parsed `cluster.store`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl StoreUrl {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS; port 6379, db 0 by
    /// default; percent-escapes in the user and password are decoded.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(format!(
                "invalid store {:?}; allowed: \"\", redis://host:port[/db], rediss://host:port[/db]",
                redact_text(text)
            ));
        };
        let bad = |why: &str| format!("invalid store {:?}: {why}", redact_text(text));
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (authority, db) = match hostpart.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (
                a,
                d.parse::<u32>()
                    .ok()
                    .filter(|n| *n < 1 << 16)
                    .ok_or_else(|| bad("the database must be a number, e.g. /0"))?,
            ),
            None => (hostpart, 0),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            None => 6379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("the port must be 1 to 65535"))?,
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !host_ok {
            return Err(bad("the host must be a name or an IP address"));
        }
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
                let pass = match pass {
                    Some(p) => {
                        Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
                    }
                    None => None,
                };
                (
                    Some(user).filter(|u| !u.is_empty()),
                    pass.filter(|p| !p.is_empty()),
                )
            }
        };
        Ok(StoreUrl {
            tls,
            host,
            port,
            db,
            username,
            password,
        })
    }

    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:{}@", crate::redact::REDACTED),
            (None, Some(_)) => format!(":{}@", crate::redact::REDACTED),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{user}{host}:{}/{}", self.port, self.db)
    }
}

/// `text` with anything between `://` and the last `@` replaced (so a URL that does not parse
/// does not print its password either).
pub fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            format!(
                "{}{}{}",
                &text[..s + 3],
                crate::redact::REDACTED,
                &text[at..]
            )
        }
        _ => text.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_with_their_defaults() {
        let u = StoreUrl::parse("redis://cache.internal").expect("valid");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (false, "cache.internal", 6379, 0)
        );
        let u = StoreUrl::parse("rediss://gw:p%40ss@10.0.0.5:6380/2").expect("valid");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (true, "10.0.0.5", 6380, 2)
        );
        assert_eq!(u.username.as_deref(), Some("gw"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.redacted(), "rediss://gw:<redacted>@10.0.0.5:6380/2");
        let u = StoreUrl::parse("redis://:secret@[::1]:7000/").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.username.as_deref()),
            ("::1", 7000, None)
        );
        assert_eq!(u.redacted(), "redis://:<redacted>@[::1]:7000/0");
        assert!(!format!("{u:?}").contains("secret"));
    }

    #[test]
    fn bad_store_urls_are_refused_without_printing_the_password() {
        for bad in [
            "http://x:6379",
            "redis://",
            "redis://host:0",
            "redis://host:99999",
            "redis://host/db",
            "redis://ho st",
            "redis://u:pw%zz@host",
        ] {
            let e = StoreUrl::parse(bad).expect_err(bad);
            assert!(e.starts_with("invalid store"), "{bad}: {e}");
            assert!(!e.contains("pw%zz"), "{e}");
        }
        assert_eq!(redact_text("redis://u:pw@h:1"), "redis://<redacted>@h:1");
    }
}
