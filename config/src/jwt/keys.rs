//! The keys of `jwt:`, compiled once per load or reload into [`JwtKeys`]: the HS* secret (from
//! `secret` or the environment), the public key of `publicKeyFile` (PEM) or every signing key of
//! `jwksFile` (by `kid`). Reading the files is kept apart from compiling them ([`KeyFiles`]),
//! so the reload pipeline can read them asynchronously and the CLI synchronously, and a bad file
//! fails the load with an error that names the key path and the file.

use super::{family, JwtConfig};
use crate::error::ConfigError;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The contents of the key files a configuration references (or why one could not be read).
pub type KeyFiles = BTreeMap<PathBuf, Result<Vec<u8>, String>>;

/// Largest key file read (a PEM key is a few KiB, a large JWK Set some tens): a mistaken path
/// such as a device or a log file fails the load instead of filling memory.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Reads `paths` with blocking I/O (the CLI and startup; the reload pipeline reads them with
/// `tokio::fs` instead), each at most [`MAX_KEY_FILE_BYTES`].
pub fn read_key_files(paths: &[PathBuf]) -> KeyFiles {
    use std::io::Read;
    let read = |p: &Path| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        std::fs::File::open(p)
            .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut out))
            .map_err(|e| e.to_string())?;
        check_size(out)
    };
    paths.iter().map(|p| (p.clone(), read(p))).collect()
}

/// Refuses contents over [`MAX_KEY_FILE_BYTES`] (read with one byte to spare to tell).
pub fn check_size(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_KEY_FILE_BYTES} bytes; not a key file"
        ));
    }
    Ok(bytes)
}

/// The kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl KeyFamily {
    fn name(self) -> &'static str {
        match self {
            KeyFamily::Hmac => "HMAC secret",
            KeyFamily::Rsa => "RSA",
            KeyFamily::Ec => "EC",
            KeyFamily::Ed => "Ed25519",
        }
    }
}

/// One verification key with what it may verify.
struct Key {
    family: KeyFamily,
    /// The JWK's `alg`: when set, only tokens of that algorithm use this key.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Why no key verifies a token (reported as `unknown_kid` or `algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// The `kid` is not in the key set, or a token without `kid` meets several keys.
    UnknownKid,
    /// No configured key is of the token algorithm's kind.
    NoKeyForAlgorithm,
}

/// Compiled verification keys. Compared by what they were built from, so a reload that reads a
/// changed key file counts as a configuration change (a new generation, a new snapshot).
pub struct JwtKeys {
    secret: Option<DecodingKey>,
    public: Option<Key>,
    /// `kid` → key; keys without `kid` only serve tokens without one, and only when alone.
    jwks: Vec<(Option<String>, Key)>,
    sources: Vec<(String, Vec<u8>)>,
}

impl PartialEq for JwtKeys {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material: this type is inside `Config`, whose Debug may be logged.
        f.debug_struct("JwtKeys")
            .field("secret", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|k| k.family))
            .field(
                "jwks",
                &self.jwks.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl JwtKeys {
    /// The key for a token signed with `alg` and carrying `kid` (the algorithm is already known
    /// to be on the allow-list).
    pub fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, KeyMiss> {
        let fam = family(alg);
        if fam == KeyFamily::Hmac {
            return self.secret.as_ref().ok_or(KeyMiss::NoKeyForAlgorithm);
        }
        if let Some(k) = &self.public {
            return if k.family == fam {
                Ok(&k.key)
            } else {
                Err(KeyMiss::NoKeyForAlgorithm)
            };
        }
        let fits = |k: &Key| k.family == fam && k.alg.is_none_or(|a| a == alg);
        let key = match kid {
            Some(kid) => self
                .jwks
                .iter()
                .find(|(id, _)| id.as_deref() == Some(kid))
                .map(|(_, k)| k),
            // Without a kid only a set of exactly one key is unambiguous.
            None if self.jwks.len() == 1 => Some(&self.jwks[0].1),
            None => None,
        };
        match key {
            Some(k) if fits(k) => Ok(&k.key),
            Some(_) => Err(KeyMiss::NoKeyForAlgorithm),
            None => Err(KeyMiss::UnknownKid),
        }
    }

    /// Number of keys in the JWK Set (0 without one).
    pub fn jwks_len(&self) -> usize {
        self.jwks.len()
    }

    /// Compiles the keys of `j` from the environment and the file contents in `files`
    /// (relative paths resolved against `base`).
    pub fn load(j: &JwtConfig, base: &Path, files: &KeyFiles) -> Result<JwtKeys, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut keys = JwtKeys {
            secret: None,
            public: None,
            jwks: Vec::new(),
            sources: Vec::new(),
        };
        if !j.secret.is_empty() {
            keys.secret = Some(DecodingKey::from_secret(j.secret.as_bytes()));
            keys.sources
                .push(("secret".into(), j.secret.as_bytes().to_vec()));
        } else if !j.secret_env.is_empty() {
            match std::env::var(&j.secret_env) {
                Ok(v) if !v.is_empty() => {
                    keys.secret = Some(DecodingKey::from_secret(v.as_bytes()));
                    keys.sources.push(("secretEnv".into(), v.into_bytes()));
                }
                _ => errors.push(ConfigError::new(
                    "jwt.secretEnv",
                    format!(
                        "environment variable {} is not set (or empty); it must hold the HS* secret",
                        j.secret_env
                    ),
                )),
            }
        }
        for (key_path, path) in j.key_files(base) {
            let bytes = match files.get(&path) {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    errors.push(file_error(key_path, &path, format!("cannot read it: {e}")));
                    continue;
                }
                None => {
                    errors.push(file_error(key_path, &path, "it was not read".into()));
                    continue;
                }
            };
            keys.sources
                .push((path.display().to_string(), bytes.clone()));
            let loaded = if key_path == "jwt.publicKeyFile" {
                pem_key(bytes).map(|k| keys.public = Some(k))
            } else {
                jwk_set(bytes).map(|set| keys.jwks = set)
            };
            if let Err(e) = loaded {
                errors.push(file_error(key_path, &path, e));
            }
        }
        if errors.is_empty() {
            errors.extend(keys.check_algorithms(j));
        }
        if errors.is_empty() {
            Ok(keys)
        } else {
            Err(errors)
        }
    }

    /// Every asymmetric algorithm listed has a key of its kind (a PEM key is one kind only).
    fn check_algorithms(&self, j: &JwtConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for alg in j.parsed_algorithms() {
            let fam = family(alg);
            if fam == KeyFamily::Hmac {
                continue;
            }
            let have = match &self.public {
                Some(k) => k.family == fam,
                None => self.jwks.iter().any(|(_, k)| k.family == fam),
            };
            if !have {
                let source = if self.public.is_some() {
                    "publicKeyFile"
                } else {
                    "jwksFile"
                };
                errors.push(ConfigError::new(
                    "jwt.algorithms",
                    format!(
                        "{alg:?} needs an {} key, and jwt.{source} ({}) has none",
                        fam.name(),
                        self.sources.last().map_or("", |(name, _)| name.as_str())
                    ),
                ));
            }
        }
        errors
    }
}

fn file_error(key_path: &str, path: &Path, why: String) -> ConfigError {
    ConfigError::new(key_path, format!("{}: {why}", path.display()))
}

type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// A PEM public key (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`) of any supported kind.
fn pem_key(bytes: &[u8]) -> Result<Key, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM text file".to_string())?;
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "holds a private key; give the public key (openssl pkey -pubout) instead".into(),
        );
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----")
        && !text.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(
            "no PEM public key found (expected -----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----)"
                .into(),
        );
    }
    let attempts: [(KeyFamily, PemParser); 3] = [
        (KeyFamily::Rsa, DecodingKey::from_rsa_pem),
        (KeyFamily::Ec, DecodingKey::from_ec_pem),
        (KeyFamily::Ed, DecodingKey::from_ed_pem),
    ];
    for (fam, parse) in attempts {
        if let Ok(key) = parse(bytes) {
            return Ok(Key {
                family: fam,
                alg: None,
                key,
            });
        }
    }
    Err("not an RSA, EC or Ed25519 public key in PEM form".into())
}

/// The signing keys of a JWK Set (`{"keys": [...]}`); `use: enc` keys are skipped, symmetric
/// (`oct`) keys refused (HS* secrets come from `secret`/`secretEnv`), kids must be unique.
fn jwk_set(bytes: &[u8]) -> Result<Vec<(Option<String>, Key)>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JSON Web Key Set: expected {\"keys\": [...]}")?;
    let mut out: Vec<(Option<String>, Key)> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let jwk: Jwk = serde_json::from_value(raw.clone())
            .map_err(|e| format!("key {i}: not a supported JSON Web Key ({e})"))?;
        let kid = jwk.common.key_id.clone();
        let name = match &kid {
            Some(k) => format!("key {i} (kid {k:?})"),
            None => format!("key {i}"),
        };
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let fam = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed,
            AlgorithmParameters::OctetKey(_) => {
                return Err(format!(
                    "{name} is a symmetric (oct) key; HS* secrets come from jwt.secret or jwt.secretEnv"
                ))
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => Some(
                signing_algorithm(ka)
                    .ok_or_else(|| format!("{name}: alg {ka} is not a signature algorithm"))?,
            ),
        };
        if let Some(a) = alg {
            if family(a) != fam {
                return Err(format!(
                    "{name}: alg {a:?} does not fit its {} key",
                    fam.name()
                ));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{name}: {e}"))?;
        if kid.is_some() && out.iter().any(|(k, _)| *k == kid) {
            return Err(format!("{name}: the kid is used twice"));
        }
        out.push((
            kid,
            Key {
                family: fam,
                alg,
                key,
            },
        ));
    }
    if out.is_empty() {
        return Err("the key set holds no signing key".into());
    }
    Ok(out)
}

fn signing_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Algorithm::from_str(&ka.to_string()).ok()
}
