//! Rate limits with `scope: global`: the same token bucket as the local one
//! (`ratelimit::bucket`, a "theoretical arrival time" per key), kept in Redis and taken by one
//! Lua script per request, so every replica draws from one bucket. The script reads the
//! store's own clock (`TIME`), so replicas with skewed clocks agree, and sets the key to expire
//! when the bucket would be full again (an absent key is a full bucket).
//!
//! Each worker thread owns its [`GlobalBuckets`] (one pipelined connection; concurrent
//! requests of that worker share its writes); the request's own future awaits the answer, so a
//! worker is never held. The caller bounds the wait (`cluster.timeout`) and decides what a
//! failure means (`cluster.onStoreDown`).

use super::conn::{Conn, StoreError};
use super::resp::Value;
use crate::ratelimit::{BucketShape, Decision, RateKey};
use std::cell::RefCell;
use std::rc::Rc;

/// KEYS[1] the bucket; ARGV[1] microseconds per token; ARGV[2] burst.
/// Returns {allowed (0/1), remaining, reset µs, retry-after µs}.
pub const TAKE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local capacity = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local used = tat - now
local ahead = used + interval
if ahead > capacity then
  local left = math.floor((capacity - used) / interval)
  if left < 0 then left = 0 end
  return {0, left, used, ahead - capacity}
end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(ahead / 1000) + 1)
return {1, math.floor((capacity - ahead) / interval), ahead, 0}
";

/// One worker's view of the shared buckets.
pub struct GlobalBuckets {
    conn: Conn,
    prefix: Rc<str>,
    /// The script's SHA1 once the store has it (`SCRIPT LOAD`), so requests send `EVALSHA`.
    sha: RefCell<Option<Rc<str>>>,
}

impl GlobalBuckets {
    pub fn new(conn: Conn, prefix: &str) -> Self {
        GlobalBuckets {
            conn,
            prefix: prefix.into(),
            sha: RefCell::new(None),
        }
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Takes a token from limit `limit`'s bucket for `key` (one round trip; two the first time
    /// on a connection, or after the store lost its scripts).
    pub async fn take(
        &self,
        limit: &str,
        key: RateKey<'_>,
        shape: &BucketShape,
    ) -> Result<Decision, StoreError> {
        let bucket = bucket_key(&self.prefix, limit, key);
        let interval = (shape.interval_nanos() / 1000).max(1).to_string();
        let burst = shape.burst().to_string();
        let sha = self.sha.borrow().clone();
        let sha = match sha {
            Some(s) => s,
            None => self.load().await?,
        };
        let reply = self
            .conn
            .call(&[
                b"EVALSHA",
                sha.as_bytes(),
                b"1",
                &bucket,
                interval.as_bytes(),
                burst.as_bytes(),
            ])
            .await;
        let reply = match reply {
            Err(StoreError::Server(e)) if e.starts_with("NOSCRIPT") => {
                let sha = self.load().await?;
                self.conn
                    .call(&[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"1",
                        &bucket,
                        interval.as_bytes(),
                        burst.as_bytes(),
                    ])
                    .await?
            }
            other => other?,
        };
        decision(&reply, shape.burst())
    }

    async fn load(&self) -> Result<Rc<str>, StoreError> {
        let v = self.conn.call(&["SCRIPT", "LOAD", TAKE_SCRIPT]).await?;
        let sha: Rc<str> = v
            .as_str()
            .ok_or_else(|| StoreError::Unexpected(format!("SCRIPT LOAD answered {v:?}")))?
            .into();
        *self.sha.borrow_mut() = Some(Rc::clone(&sha));
        Ok(sha)
    }
}

/// `{prefix}rl:{limit}:{kind}:{value}`: kinds apart, so an IP never shares a header's bucket.
pub fn bucket_key(prefix: &str, limit: &str, key: RateKey<'_>) -> Vec<u8> {
    let mut k = format!("{prefix}rl:{limit}:").into_bytes();
    match key {
        RateKey::Global => k.extend_from_slice(b"g"),
        RateKey::Ip(ip) => k.extend_from_slice(format!("ip:{}", ip.to_canonical()).as_bytes()),
        RateKey::Header(None) => k.extend_from_slice(b"h-"),
        RateKey::Header(Some(v)) => {
            k.extend_from_slice(b"h:");
            k.extend_from_slice(v);
        }
    }
    k
}

/// The script's reply as the local limiter's [`Decision`].
fn decision(v: &Value, limit: u32) -> Result<Decision, StoreError> {
    let bad = || StoreError::Unexpected(format!("rate-limit script answered {v:?}"));
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let n: Vec<i64> = items.iter().filter_map(Value::as_int).collect();
    let [allowed, remaining, reset_us, retry_us] = n[..] else {
        return Err(bad());
    };
    let secs = |us: i64| (u64::try_from(us).unwrap_or(0)).div_ceil(1_000_000);
    Ok(Decision {
        allowed: allowed == 1,
        limit,
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        reset_secs: secs(reset_us),
        retry_after_secs: if allowed == 1 {
            0
        } else {
            secs(retry_us).max(1)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_keep_kinds_apart() {
        let ip = bucket_key("g:", "server", RateKey::Ip("10.0.0.1".parse().expect("ip")));
        assert_eq!(ip, b"g:rl:server:ip:10.0.0.1");
        let mapped = bucket_key(
            "g:",
            "server",
            RateKey::Ip("::ffff:10.0.0.1".parse().expect("ip")),
        );
        assert_eq!(mapped, ip, "an IPv4-mapped address is the IPv4 client");
        assert_eq!(
            bucket_key("g:", "api", RateKey::Header(Some(b"k"))),
            b"g:rl:api:h:k"
        );
        assert_eq!(
            bucket_key("g:", "api", RateKey::Header(None)),
            b"g:rl:api:h-"
        );
        assert_eq!(bucket_key("g:", "api", RateKey::Global), b"g:rl:api:g");
    }

    #[test]
    fn script_replies_become_decisions() {
        let v = Value::Array(vec![
            Value::Int(0),
            Value::Int(0),
            Value::Int(2_500_000),
            Value::Int(1),
        ]);
        let d = decision(&v, 5).expect("decision");
        assert_eq!(
            (d.allowed, d.remaining, d.reset_secs, d.retry_after_secs),
            (false, 0, 3, 1)
        );
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Int(4),
            Value::Int(200_000),
            Value::Int(0),
        ]);
        let d = decision(&v, 5).expect("decision");
        assert_eq!(
            (d.allowed, d.remaining, d.reset_secs, d.retry_after_secs),
            (true, 4, 1, 0)
        );
        assert!(decision(&Value::Int(1), 5).is_err());
        assert!(decision(&Value::Array(vec![Value::Int(1)]), 5).is_err());
    }
}
