//! `rateLimit:` blocks: the server-wide token bucket (`server.rateLimit`, off unless enabled) and
//! a route's override (`routes[].rateLimit`, on by being present). Both share the value checks
//! here so the two spellings cannot drift apart; the buckets themselves live in the actors crate.

pub use crate::cluster::Scope;
use crate::error::ConfigError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Largest `rate` (tokens per second): one token per nanosecond, the bucket clock's resolution.
pub const MAX_RATE: f64 = 1e9;
/// Largest `maxKeys` (per-key buckets kept per limiter).
pub const MAX_KEYS_LIMIT: u32 = 10_000_000;
/// Default `maxKeys`.
pub const DEFAULT_MAX_KEYS: u32 = 100_000;

/// What a rate-limit bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyBy {
    #[default]
    Global,
    Ip,
    /// Lower-case header name; requests without the header share one bucket.
    Header(String),
}

impl fmt::Display for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyBy::Global => f.write_str("global"),
            KeyBy::Ip => f.write_str("ip"),
            KeyBy::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl Serialize for KeyBy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::parse_str(d, "global, ip or header:NAME", |text| {
            let lower = text.trim().to_ascii_lowercase();
            match lower.as_str() {
                "global" => Ok(KeyBy::Global),
                "ip" => Ok(KeyBy::Ip),
                _ => match lower.strip_prefix("header:") {
                    Some(name) if crate::validate::is_token(name) => Ok(KeyBy::Header(name.into())),
                    _ => Err(format!(
                        "invalid keyBy {text:?}; allowed: global, ip, header:NAME"
                    )),
                },
            }
        })
    }
}

/// `server.rateLimit:` token bucket over every L7 request and every accepted L4 connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Tokens added per second (continuously).
    pub rate: f64,
    /// Bucket size: the most requests allowed at once after a quiet spell.
    pub burst: u32,
    #[serde(alias = "key_by")]
    pub key_by: KeyBy,
    /// Per-key buckets kept at most (for `ip` and `header:NAME`); idle ones are evicted first.
    #[serde(alias = "max_keys")]
    pub max_keys: u32,
    /// `local` (this replica's buckets) or `global` (the `cluster.store`'s, shared).
    pub scope: Scope,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            rate: 1000.0,
            burst: 100,
            key_by: KeyBy::Global,
            max_keys: DEFAULT_MAX_KEYS,
            scope: Scope::Local,
        }
    }
}

/// `routes[].rateLimit:` a route's own limit, used instead of `server.rateLimit` for that route.
/// Present = enabled (even when `server.rateLimit` is off); `enabled: false` exempts the route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouteRateLimitConfig {
    pub enabled: bool,
    pub rate: f64,
    pub burst: u32,
    #[serde(alias = "key_by")]
    pub key_by: KeyBy,
    #[serde(alias = "max_keys")]
    pub max_keys: u32,
    pub scope: Scope,
}

impl Default for RouteRateLimitConfig {
    fn default() -> Self {
        let s = RateLimitConfig::default();
        Self {
            enabled: true,
            rate: s.rate,
            burst: s.burst,
            key_by: s.key_by,
            max_keys: s.max_keys,
            scope: s.scope,
        }
    }
}

impl From<&RouteRateLimitConfig> for RateLimitConfig {
    fn from(r: &RouteRateLimitConfig) -> Self {
        RateLimitConfig {
            enabled: r.enabled,
            rate: r.rate,
            burst: r.burst,
            key_by: r.key_by.clone(),
            max_keys: r.max_keys,
            scope: r.scope,
        }
    }
}

impl RateLimitConfig {
    /// Value checks (made whether or not the block is enabled), with paths under `base`.
    pub fn check(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            errors.push(ConfigError::new(
                format!("{base}.rate"),
                format!(
                    "{} is out of range; allowed a number of tokens per second above 0, at most {MAX_RATE:e}",
                    self.rate
                ),
            ));
        }
        if self.burst == 0 {
            errors.push(ConfigError::new(
                format!("{base}.burst"),
                "0 is out of range; allowed 1 or more (the bucket size)",
            ));
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS_LIMIT {
            errors.push(ConfigError::new(
                format!("{base}.maxKeys"),
                format!(
                    "{} is out of range; allowed 1 to {MAX_KEYS_LIMIT}",
                    self.max_keys
                ),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_block_is_enabled_by_default_and_converts() {
        let r: RouteRateLimitConfig =
            serde_yaml::from_str("{rate: 5, burst: 2, keyBy: \"header:X-Api-Key\"}").unwrap();
        assert!(r.enabled);
        let s = RateLimitConfig::from(&r);
        assert_eq!(s.key_by, KeyBy::Header("x-api-key".into()));
        assert_eq!((s.rate, s.burst, s.max_keys), (5.0, 2, DEFAULT_MAX_KEYS));
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let bad = RateLimitConfig {
            rate: 0.0,
            burst: 0,
            max_keys: 0,
            ..RateLimitConfig::default()
        };
        let paths: Vec<String> = bad.check("x").into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["x.rate", "x.burst", "x.maxKeys"]);
        let nan = RateLimitConfig {
            rate: f64::NAN,
            ..RateLimitConfig::default()
        };
        assert_eq!(nan.check("x").len(), 1);
        assert!(RateLimitConfig::default().check("x").is_empty());
    }
}
