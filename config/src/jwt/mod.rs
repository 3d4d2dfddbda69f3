//! `jwt:` the token policy of routes with `auth: jwt`: which algorithms are accepted (never
//! `none`, never whatever the token's header asks for), where the keys come from, which claims
//! are checked and which are copied to upstream headers. The schema and its value checks live
//! here; reading and compiling the key files is `keys`.

mod keys;

pub use keys::{
    check_size, read_key_files, JwtKeys, KeyFamily, KeyFiles, KeyMiss, MAX_KEY_FILE_BYTES,
};

use crate::duration::{parse_duration, Dur};
use crate::error::ConfigError;
use crate::validate::is_token;
use jsonwebtoken::Algorithm;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Algorithm names `algorithms` accepts (JOSE spelling, case-sensitive).
pub const ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// `jwt:` (its `Debug` leaves the secret out).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct JwtConfig {
    /// The allow-list; a token whose header names another algorithm is rejected.
    pub algorithms: Vec<String>,
    /// HS* secret, literal (`GET /config` shows it redacted).
    pub secret: String,
    /// HS* secret from this environment variable, read at load and reload.
    #[serde(alias = "secret_env")]
    pub secret_env: String,
    /// RS*/PS*/ES*/EdDSA public key (PEM); relative to the config file's directory.
    #[serde(alias = "public_key_file")]
    pub public_key_file: String,
    /// JSON Web Key Set; the token's `kid` picks the key. Relative like `publicKeyFile`.
    #[serde(alias = "jwks_file")]
    pub jwks_file: String,
    /// Required `iss` when set.
    pub issuer: String,
    /// The token's `aud` (a string, or an array) must hold one of these when set.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds).
    pub leeway: Leeway,
    /// A token without `exp` is rejected unless this is false.
    #[serde(alias = "require_exp")]
    pub require_exp: bool,
    /// Claim name → upstream request header.
    #[serde(alias = "forward_claims")]
    pub forward_claims: BTreeMap<String, String>,
    /// The keys, read and compiled at load/reload (see [`crate::prepare`]); `None` until then.
    #[serde(skip)]
    pub keys: Option<Arc<JwtKeys>>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithms: Vec::new(),
            secret: String::new(),
            secret_env: String::new(),
            public_key_file: String::new(),
            jwks_file: String::new(),
            issuer: String::new(),
            audience: Vec::new(),
            leeway: Leeway(Duration::from_secs(30)),
            require_exp: true,
            forward_claims: BTreeMap::new(),
            keys: None,
        }
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithms", &self.algorithms)
            .field("secret", &(!self.secret.is_empty()).then_some("<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("require_exp", &self.require_exp)
            .field("forward_claims", &self.forward_claims)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Which key source an algorithm needs.
pub fn family(alg: Algorithm) -> KeyFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => KeyFamily::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => KeyFamily::Ec,
        Algorithm::EdDSA => KeyFamily::Ed,
    }
}

impl JwtConfig {
    /// The parsed allow-list (names that do not parse are skipped; `validate` reports them).
    pub fn parsed_algorithms(&self) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for a in &self.algorithms {
            if let Ok(alg) = Algorithm::from_str(a) {
                if !out.contains(&alg) {
                    out.push(alg);
                }
            }
        }
        out
    }

    fn wants(&self, fam: KeyFamily) -> bool {
        self.parsed_algorithms().iter().any(|a| family(*a) == fam)
    }

    /// The key files this block references, as `(key path, file)`, relative paths resolved
    /// against `base` (the config file's directory).
    pub fn key_files(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        for (key, file) in [
            ("jwt.publicKeyFile", &self.public_key_file),
            ("jwt.jwksFile", &self.jwks_file),
        ] {
            if !file.is_empty() {
                out.push((key, base.join(file)));
            }
        }
        out
    }
}

/// Value checks of `jwt:` (key files are checked when they are read).
pub(crate) fn check(j: &JwtConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, msg: String| errors.push(ConfigError::new(path, msg));
    if j.algorithms.is_empty() {
        err(
            "jwt.algorithms".into(),
            format!("list the accepted algorithms explicitly; allowed: {ALGORITHMS}"),
        );
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        if a.trim().eq_ignore_ascii_case("none") {
            err(
                format!("jwt.algorithms[{i}]"),
                "\"none\" (unsigned tokens) is never accepted".into(),
            );
        } else if Algorithm::from_str(a).is_err() {
            err(
                format!("jwt.algorithms[{i}]"),
                format!("unknown algorithm {a:?}; allowed: {ALGORITHMS}"),
            );
        }
    }
    if !j.secret.is_empty() && !j.secret_env.is_empty() {
        err(
            "jwt.secretEnv".into(),
            "set either secret or secretEnv, not both".into(),
        );
    }
    if !j.public_key_file.is_empty() && !j.jwks_file.is_empty() {
        err(
            "jwt.jwksFile".into(),
            "set either publicKeyFile or jwksFile, not both".into(),
        );
    }
    let has_secret = !j.secret.is_empty() || !j.secret_env.is_empty();
    let has_public = !j.public_key_file.is_empty() || !j.jwks_file.is_empty();
    if j.wants(KeyFamily::Hmac) && !has_secret {
        err(
            "jwt.secret".into(),
            "the HS* algorithms need a secret (jwt.secret or jwt.secretEnv)".into(),
        );
    }
    let asymmetric = [KeyFamily::Rsa, KeyFamily::Ec, KeyFamily::Ed]
        .into_iter()
        .any(|f| j.wants(f));
    if asymmetric && !has_public {
        err(
            "jwt.publicKeyFile".into(),
            "the RS*/PS*/ES*/EdDSA algorithms need a public key (jwt.publicKeyFile or jwt.jwksFile)"
                .into(),
        );
    }
    if !j.secret_env.is_empty() && !is_token(&j.secret_env) {
        err(
            "jwt.secretEnv".into(),
            format!("{:?} is not an environment variable name", j.secret_env),
        );
    }
    for (i, a) in j.audience.iter().enumerate() {
        if a.is_empty() {
            err(format!("jwt.audience[{i}]"), "must not be empty".into());
        }
    }
    let mut headers: Vec<String> = Vec::new();
    for (claim, header) in &j.forward_claims {
        let path = format!("jwt.forwardClaims.{claim}");
        if claim.is_empty() {
            err(path.clone(), "the claim name must not be empty".into());
        }
        if !is_token(header) {
            err(path, format!("{header:?} is not a valid header name"));
        } else if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            err(
                path,
                format!("{header} is set by the gateway itself; choose another header"),
            );
        } else if headers.contains(&header.to_ascii_lowercase()) {
            err(
                path,
                format!("{header} already receives another claim; one header per claim"),
            );
        } else {
            headers.push(header.to_ascii_lowercase());
        }
    }
    errors
}

/// Headers the gateway owns on the upstream request (framing, routing and forwarding ones): a
/// claim may not be written into them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "authorization",
    "cookie",
];

/// `leeway`: a duration that may be zero (`0`, `"0s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leeway(pub Duration);

impl Leeway {
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Serialize for Leeway {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_zero() {
            s.serialize_str("0s")
        } else {
            Dur(self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Leeway {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Leeway;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", or 0")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Leeway, E> {
                let t = v.trim();
                if t.trim_end_matches(['s', 'm', 'h']).trim_end_matches('m') == "0" {
                    return Ok(Leeway(Duration::ZERO));
                }
                parse_duration(t).map(Leeway).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leeway, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leeway, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leeway, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
