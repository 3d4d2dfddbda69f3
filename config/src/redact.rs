//! Secret redaction for `GET /config`, by key name over the serialized value, so blocks added
//! later (JWT secrets, TLS keys, header rules carrying credentials) are covered without each
//! remembering to opt in: a non-empty string under a key whose name ends in `secret`, `token`,
//! `password`, `key` or `authorization` (case, `-` and `_` ignored: `secret`, `token`,
//! `privateKey`, `X-Api-Key`, `Authorization`) becomes `"<redacted>"`. Names of files and
//! environment variables (`keyFile`, `secretEnv`) are not secrets and stay.

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

const SENSITIVE_SUFFIXES: &[&str] = &["secret", "token", "password", "key", "authorization"];

/// Whether a value under `key` is secret material.
pub fn is_sensitive_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SENSITIVE_SUFFIXES.iter().any(|s| norm.ends_with(s))
}

/// Replaces every secret in `value` (recursively) with [`REDACTED`].
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if !s.is_empty() && is_sensitive_key(k) => {
                        *s = REDACTED.to_string();
                    }
                    // A list of secrets (several keys, say): each one.
                    Value::Array(items) if is_sensitive_key(k) => {
                        for item in items.iter_mut() {
                            if matches!(item, Value::String(s) if !s.is_empty()) {
                                *item = Value::String(REDACTED.to_string());
                            } else {
                                redact(item);
                            }
                        }
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_by_key_name_anywhere() {
        let mut v = json!({
            "server": {"admin": {"token": "t0k", "listenAddr": "127.0.0.1:9090"},
                       "tls": {"keyFile": "/etc/k.pem", "certificates": [{"privateKey": "PEM"}]}},
            "jwt": {"secret": "hs", "secretEnv": "JWT_SECRET", "publicKeyFile": "k.pem",
                    "keys": ["not", "secret"], "signingKey": ""},
            "routes": [{"requestHeaders": {"set": {"X-Api-Key": "abc", "Authorization": "Bearer x",
                                                   "X-Trace": "on"}}}],
            "cluster": {"password": "pw", "keyPrefix": "gogate:"},
            "server_rate": {"keyBy": "ip", "maxKeys": 10},
        });
        redact(&mut v);
        let text = v.to_string();
        for secret in ["t0k", "\"PEM\"", "\"hs\"", "abc", "Bearer x", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} leaks: {text}");
        }
        assert_eq!(v["server"]["tls"]["keyFile"], "/etc/k.pem");
        assert_eq!(v["jwt"]["secretEnv"], "JWT_SECRET");
        assert_eq!(v["jwt"]["publicKeyFile"], "k.pem");
        assert_eq!(v["jwt"]["signingKey"], "", "an empty value says nothing");
        assert_eq!(v["jwt"]["keys"], json!(["not", "secret"]));
        assert_eq!(v["cluster"]["keyPrefix"], "gogate:");
        assert_eq!(v["server_rate"]["keyBy"], "ip");
        assert_eq!(
            v["routes"][0]["requestHeaders"]["set"]["X-Trace"], "on",
            "{text}"
        );
        assert_eq!(v["server"]["admin"]["token"], REDACTED);
    }
}
