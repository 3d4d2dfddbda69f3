//! The service registry kept in the cluster store (`cluster.registry`), so a registration,
//! heartbeat or deregistration through any replica is seen by every replica. The store is the
//! source of truth; each replica's `RegistryActor` mirrors it.
//!
//! Layout under `cluster.keyPrefix` `P`: one hash `P svc:ID` per service (`spec`, the JSON of
//! its name, address, tags, metadata and weight, opaque to the scripts; `registered_at`,
//! `last_heartbeat` in the store's milliseconds; `ttl_ms`) that Redis itself expires `ttl`
//! after the last heartbeat; a sorted set `P svcs` of ids by deadline (for listing and for the
//! cluster-wide `maxServices`); and a channel `P registry` on which every change publishes
//! the id it touched. A replica fetches what a message names, and reads everything again
//! every resync period and after (re)subscribing, so missed messages and late starters
//! converge. Each operation is one Lua script: atomic, on the store's clock.

use super::conn::{Conn, StoreError};
use super::resp::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const NOW: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS svc, index; ARGV id, spec, ttl_ms, max, channel → {created 1/0 or -1 full, registered_at}.
const REGISTER: &str = "
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local existed = redis.call('EXISTS', KEYS[1]) == 1
if not existed and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return {-1, 0} end
local reg = now
if existed then reg = tonumber(redis.call('HGET', KEYS[1], 'registered_at') or now) end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'registered_at', reg, 'last_heartbeat', now, 'ttl_ms', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[1])
if existed then return {0, reg} end
return {1, reg}
";

/// KEYS svc, index; ARGV id, channel → 1 kept alive, 0 unknown.
const HEARTBEAT: &str = "
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl_ms'))
redis.call('HSET', KEYS[1], 'last_heartbeat', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
";

/// KEYS svc, index; ARGV id, channel → 1 removed, 0 unknown.
const DEREGISTER: &str = "
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n
";

/// KEYS index; ARGV the services' key prefix → {{id, spec, registered_at, last_heartbeat,
/// ttl_ms, pttl}...} for every live service (the index's stale entries are dropped).
const SYNC: &str = "
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. id
  local pttl = redis.call('PTTL', k)
  if pttl > 0 then
    local h = redis.call('HMGET', k, 'spec', 'registered_at', 'last_heartbeat', 'ttl_ms')
    table.insert(out, {id, h[1], h[2], h[3], h[4], pttl})
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
";

/// KEYS svc; ARGV id → {id, spec, registered_at, last_heartbeat, ttl_ms, pttl} or nil.
const FETCH: &str = "
local pttl = redis.call('PTTL', KEYS[1])
if pttl <= 0 then return nil end
local h = redis.call('HMGET', KEYS[1], 'spec', 'registered_at', 'last_heartbeat', 'ttl_ms')
return {ARGV[1], h[1], h[2], h[3], h[4], pttl}
";

/// What a service's `spec` field holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecRecord {
    pub name: String,
    pub address: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub weight: u32,
}

/// One service as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredService {
    pub id: String,
    pub spec: SpecRecord,
    /// Milliseconds since the epoch, on the store's clock.
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub ttl: Duration,
    /// How long the store keeps it without another heartbeat.
    pub remaining: Duration,
}

/// What a registration did in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created {
        registered_at_ms: u64,
    },
    Updated {
        registered_at_ms: u64,
    },
    /// `maxServices` reached across the cluster.
    Full,
}

/// The registry's client of the store (control plane: the registry actor owns it).
pub struct SharedRegistry {
    pub conn: Conn,
    prefix: String,
    /// Bound on each operation.
    pub timeout: Duration,
    /// The store, as errors name it (no password).
    pub store: String,
}

impl SharedRegistry {
    pub fn new(conn: Conn, prefix: &str, timeout: Duration, store: String) -> Self {
        SharedRegistry {
            conn,
            prefix: prefix.to_string(),
            timeout,
            store,
        }
    }

    fn svc_key(&self, id: &str) -> String {
        format!("{}svc:{id}", self.prefix)
    }
    fn index(&self) -> String {
        format!("{}svcs", self.prefix)
    }
    /// The change feed every replica subscribes to.
    pub fn channel(&self) -> String {
        format!("{}registry", self.prefix)
    }

    async fn eval(
        &self,
        script: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let body = format!("{NOW}{script}");
        let mut cmd: Vec<&[u8]> = vec![b"EVAL", body.as_bytes()];
        let n = keys.len().to_string();
        cmd.push(n.as_bytes());
        cmd.extend(keys.iter().map(|k| k.as_bytes()));
        cmd.extend(args.iter().map(|a| a.as_bytes()));
        match tokio::time::timeout(self.timeout, self.conn.call(&cmd)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        }
    }

    pub async fn register(
        &self,
        id: &str,
        spec: &SpecRecord,
        ttl: Duration,
        max: usize,
    ) -> Result<Registered, StoreError> {
        let json =
            serde_json::to_string(spec).map_err(|e| StoreError::Unexpected(e.to_string()))?;
        let v = self
            .eval(
                REGISTER,
                &[self.svc_key(id), self.index()],
                &[
                    id.into(),
                    json,
                    ttl_ms(ttl),
                    max.to_string(),
                    self.channel(),
                ],
            )
            .await?;
        let ints = ints(&v);
        match ints[..] {
            [-1, _] => Ok(Registered::Full),
            [1, at] => Ok(Registered::Created {
                registered_at_ms: at.max(0) as u64,
            }),
            [0, at] => Ok(Registered::Updated {
                registered_at_ms: at.max(0) as u64,
            }),
            _ => Err(StoreError::Unexpected(format!("register answered {v:?}"))),
        }
    }

    /// `true` when the service was known (and lives `ttl` from now).
    pub async fn heartbeat(&self, id: &str) -> Result<bool, StoreError> {
        let v = self
            .eval(
                HEARTBEAT,
                &[self.svc_key(id), self.index()],
                &[id.into(), self.channel()],
            )
            .await?;
        Ok(v.as_int() == Some(1))
    }

    /// `true` when the service was known.
    pub async fn deregister(&self, id: &str) -> Result<bool, StoreError> {
        let v = self
            .eval(
                DEREGISTER,
                &[self.svc_key(id), self.index()],
                &[id.into(), self.channel()],
            )
            .await?;
        Ok(v.as_int() == Some(1))
    }

    /// Every live service.
    pub async fn sync(&self) -> Result<Vec<StoredService>, StoreError> {
        let prefix = format!("{}svc:", self.prefix);
        let v = self.eval(SYNC, &[self.index()], &[prefix]).await?;
        let Value::Array(rows) = v else {
            return Err(StoreError::Unexpected(format!("sync answered {v:?}")));
        };
        Ok(rows.iter().filter_map(stored).collect())
    }

    /// One service, `None` when the store no longer has it.
    pub async fn fetch(&self, id: &str) -> Result<Option<StoredService>, StoreError> {
        let v = self.eval(FETCH, &[self.svc_key(id)], &[id.into()]).await?;
        Ok(stored(&v))
    }
}

fn ttl_ms(ttl: Duration) -> String {
    ttl.as_millis().max(1).to_string()
}

fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_int).collect(),
        _ => Vec::new(),
    }
}

/// One row of SYNC or FETCH; `None` for a malformed one (skipped: another replica's bug
/// must not stop this one's mirror).
fn stored(v: &Value) -> Option<StoredService> {
    let Value::Array(f) = v else { return None };
    let text = |i: usize| f.get(i).and_then(Value::as_str);
    let num = |i: usize| {
        f.get(i)
            .and_then(Value::as_int)
            .and_then(|n| u64::try_from(n).ok())
    };
    Some(StoredService {
        id: text(0)?.to_string(),
        spec: serde_json::from_str(text(1)?).ok()?,
        registered_at_ms: num(2)?,
        last_heartbeat_ms: num(3)?,
        ttl: Duration::from_millis(num(4)?),
        remaining: Duration::from_millis(num(5)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_malformed_rows_are_skipped() {
        let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let row = Value::Array(vec![
            bulk("a1"),
            bulk(r#"{"name":"api","address":"10.0.0.1:80","tags":[],"metadata":{},"weight":1}"#),
            bulk("1000"),
            bulk("2000"),
            bulk("30000"),
            Value::Int(29000),
        ]);
        let s = stored(&row).expect("a row");
        assert_eq!(
            (s.id.as_str(), s.spec.address.as_str()),
            ("a1", "10.0.0.1:80")
        );
        assert_eq!(
            (s.ttl, s.remaining),
            (Duration::from_secs(30), Duration::from_secs(29))
        );
        assert_eq!(
            stored(&Value::Array(vec![bulk("a1"), bulk("not json")])),
            None
        );
        assert_eq!(stored(&Value::Nil), None);
    }
}
