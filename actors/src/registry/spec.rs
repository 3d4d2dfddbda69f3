//! Validation of a registration body (`POST /v1/services`): turns untrusted JSON into a
//! [`ServiceSpec`] or one clear message for the 400 answer. Pure; no actix.

use gogate_config::validate::MAX_WEIGHT;
use gogate_config::{check_backend_addr, parse_duration};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest id, name, tag or metadata key/value accepted (they appear in logs and metrics).
pub const MAX_TEXT_LEN: usize = 256;
/// Most tags or metadata entries per service.
pub const MAX_ENTRIES: usize = 64;

/// A validated registration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// `None`: the registry generates a 128-bit random id.
    pub id: Option<String>,
    pub name: String,
    pub address: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub weight: u32,
    /// `None`: the registry's `defaultTtl`.
    pub ttl: Option<Duration>,
}

impl ServiceSpec {
    /// A minimal spec (tests, callers inside the gateway).
    pub fn new(name: &str, address: &str) -> Self {
        ServiceSpec {
            id: None,
            name: name.into(),
            address: address.into(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            weight: 1,
            ttl: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    id: Option<String>,
    name: Option<String>,
    address: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    weight: Option<u32>,
    ttl: Option<Value>,
}

/// Parses and validates a registration body.
pub fn parse_spec(body: &[u8]) -> Result<ServiceSpec, String> {
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        format!("invalid JSON body: {e}; expected {{\"name\", \"address\", \"id\"?, \"tags\"?, \"metadata\"?, \"weight\"?, \"ttl\"?}}")
    })?;
    let id = b.id.map(|id| check_id(&id).map(|()| id)).transpose()?;
    let name = b.name.ok_or("missing field \"name\"")?;
    check_name(&name)?;
    let address = b.address.ok_or("missing field \"address\"")?;
    check_backend_addr(&address).map_err(|e| format!("address: {e}"))?;
    if b.tags.len() > MAX_ENTRIES || b.metadata.len() > MAX_ENTRIES {
        return Err(format!(
            "at most {MAX_ENTRIES} tags and {MAX_ENTRIES} metadata entries"
        ));
    }
    let long = |s: &String| s.len() > MAX_TEXT_LEN;
    if b.tags.iter().any(long) || b.metadata.iter().any(|(k, v)| long(k) || long(v)) {
        return Err(format!(
            "tags and metadata keys/values are limited to {MAX_TEXT_LEN} bytes"
        ));
    }
    let weight = b.weight.unwrap_or(1);
    if weight > MAX_WEIGHT {
        return Err(format!(
            "weight {weight} is too large; allowed 0 to {MAX_WEIGHT}"
        ));
    }
    let ttl = b.ttl.as_ref().map(parse_ttl).transpose()?;
    Ok(ServiceSpec {
        id,
        name,
        address,
        tags: b.tags,
        metadata: b.metadata,
        weight,
        ttl,
    })
}

/// `ttl`: a duration string (`"30s"`) or a positive number of seconds.
fn parse_ttl(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(
                "ttl must be a duration string such as \"30s\" or a number of seconds".into(),
            )
        }
    };
    parse_duration(&text).map_err(|e| format!("ttl: {e}"))
}

/// Ids appear in URL paths: letters, digits, `.`, `_`, `-`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TEXT_LEN || !id.bytes().all(safe_byte) {
        return Err(format!(
            "invalid id {id:?}; use 1 to {MAX_TEXT_LEN} letters, digits, '.', '_' or '-' (or omit it to get a generated one)"
        ));
    }
    Ok(())
}

/// Names select an upstream: the same characters as upstream names.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TEXT_LEN || !name.bytes().all(safe_byte) {
        return Err(format!(
            "invalid name {name:?}; use 1 to {MAX_TEXT_LEN} letters, digits, '.', '_' or '-' (upstream names)"
        ));
    }
    Ok(())
}

fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_spec(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn parses_a_full_body() {
        let s = parse_spec(br#"{"id":"a-1","name":"api","address":"10.0.0.1:80","tags":["v2"],"metadata":{"zone":"b"},"weight":5,"ttl":"1m"}"#).unwrap();
        assert_eq!(s.id.as_deref(), Some("a-1"));
        assert_eq!((s.weight, s.ttl), (5, Some(Duration::from_secs(60))));
        assert_eq!(s.tags, vec!["v2"]);
        let s = parse_spec(br#"{"name":"api","address":"svc.local:80","ttl":2.5}"#).unwrap();
        assert_eq!((s.id, s.weight), (None, 1));
        assert_eq!(s.ttl, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        assert!(err("{").contains("invalid JSON"));
        assert!(err(r#"{"address":"a:1"}"#).contains("\"name\""));
        assert!(err(r#"{"name":"a"}"#).contains("\"address\""));
        assert!(err(r#"{"name":"a","address":"nope"}"#).contains("address"));
        assert!(err(r#"{"name":"a","address":"a:0"}"#).contains("port 0"));
        assert!(err(r#"{"name":"a","address":"a:1","ttl":"0s"}"#).contains("ttl"));
        assert!(err(r#"{"name":"a","address":"a:1","ttl":-1}"#).contains("ttl"));
        assert!(err(r#"{"name":"a","address":"a:1","ttl":"soon"}"#).contains("ttl"));
        assert!(err(r#"{"name":"a","address":"a:1","ttl":true}"#).contains("ttl"));
        assert!(err(r#"{"name":"a","address":"a:1","weight":10001}"#).contains("weight"));
        assert!(err(r#"{"name":"a","address":"a:1","id":"a/b"}"#).contains("invalid id"));
        assert!(err(r#"{"name":"","address":"a:1"}"#).contains("invalid name"));
        assert!(err(r#"{"name":"a","address":"a:1","port":1}"#).contains("port"));
    }
}
