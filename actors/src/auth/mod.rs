//! JWT verification of routes with `auth: jwt`, as pure logic the data plane calls with the
//! request's `Authorization` header. Everything that can be prepared is prepared when the
//! snapshot is built: the compiled keys (`gogate_config::JwtKeys`), one `jsonwebtoken`
//! `Validation` per accepted algorithm, the claim → header pairs. A check is then a header
//! parse, a key lookup and one `jsonwebtoken::decode`: no I/O, no lock.
//!
//! The algorithm comes from the allow-list only: the token's `alg` merely selects one of the
//! prepared validations, so `none` (any case) and algorithm confusion (an HS256 token "signed"
//! with an RSA public key's PEM) find no validation, or no key of their kind, and are rejected.

use actix_http::header::{HeaderName, HeaderValue};
use gogate_config::jwt::KeyMiss;
use gogate_config::{JwtConfig, JwtKeys};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use std::collections::HashSet;
use std::sync::Arc;

mod cache;
pub use cache::{TokenCache, MAX_CACHED_TOKENS, MAX_CACHED_TOKEN_BYTES};

/// Tokens longer than this are rejected before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a request was refused (the `reason` label of `gogate_auth_rejected_total`; the client
/// only learns whether a token was missing or invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header, or `Bearer` without a token.
    Missing,
    /// An `Authorization` scheme other than `Bearer`.
    Scheme,
    Oversized,
    /// Not three base64url parts of JSON, several `Authorization` headers, or claims of the
    /// wrong type.
    Malformed,
    /// `alg` not on the allow-list (`none` included), or no key of its kind.
    Algorithm,
    /// The `kid` is not in the key set (or no `kid` while the set has several keys).
    UnknownKid,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    /// A required claim (`exp`) is missing.
    MissingClaim,
}

impl Rejection {
    pub const ALL: [Rejection; 12] = [
        Rejection::Missing,
        Rejection::Scheme,
        Rejection::Oversized,
        Rejection::Malformed,
        Rejection::Algorithm,
        Rejection::UnknownKid,
        Rejection::Signature,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::Issuer,
        Rejection::Audience,
        Rejection::MissingClaim,
    ];

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Scheme => "scheme",
            Rejection::Oversized => "oversized",
            Rejection::Malformed => "malformed",
            Rejection::Algorithm => "algorithm",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::Signature => "signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Issuer => "issuer",
            Rejection::Audience => "audience",
            Rejection::MissingClaim => "missing_claim",
        }
    }

    /// Whether a token was presented (RFC 6750 3.1: then `error="invalid_token"`); a request
    /// without one gets the bare `Bearer` challenge.
    pub fn invalid_token(self) -> bool {
        !matches!(self, Rejection::Missing | Rejection::Scheme)
    }

    fn index(self) -> usize {
        Rejection::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every rejection is in ALL")
    }
}

/// The claims of an accepted token, as the upstream headers `forwardClaims` asks for.
pub type ClaimHeaders = Vec<(HeaderName, HeaderValue)>;

/// The compiled `jwt:` policy (one per snapshot, shared by every `auth: jwt` route).
pub struct JwtVerifier {
    keys: Arc<JwtKeys>,
    validations: Vec<(Algorithm, Validation)>,
    forward: Vec<(String, HeaderName)>,
    /// Unique per compiled policy: what a worker's [`TokenCache`] entries belong to.
    id: u64,
    /// `jwt.leeway` in seconds (the cache checks the time claims of a remembered token).
    leeway: u64,
}

/// Where [`JwtVerifier`] ids come from.
static NEXT_POLICY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl JwtVerifier {
    /// `None` when the block's keys were not compiled (a config not loaded through
    /// `gogate_config::prepare`/`finish`); routes then reject every request.
    pub fn new(cfg: &JwtConfig) -> Option<Self> {
        let keys = cfg.keys.clone()?;
        let validations = cfg
            .parsed_algorithms()
            .into_iter()
            .map(|alg| (alg, validation(cfg, alg)))
            .collect();
        Some(JwtVerifier {
            keys,
            validations,
            forward: forward_headers(cfg),
            id: NEXT_POLICY.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            leeway: cfg.leeway.secs(),
        })
    }

    /// Checks the request's `Authorization` values (all of them: more than one is refused).
    pub fn check<'a>(
        &self,
        mut authorization: impl Iterator<Item = &'a HeaderValue>,
    ) -> Result<ClaimHeaders, Rejection> {
        let Some(value) = authorization.next() else {
            return Err(Rejection::Missing);
        };
        if authorization.next().is_some() {
            return Err(Rejection::Malformed);
        }
        let token = bearer_token(value.as_bytes())?;
        let claims = self.verify(token)?;
        Ok(self.claim_headers(&claims))
    }

    /// Verifies a compact JWS and returns its claims.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Oversized);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_rejection(token))?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, v)| v)
            .ok_or(Rejection::Algorithm)?;
        let key = self
            .keys
            .select(header.alg, header.kid.as_deref())
            .map_err(|miss| match miss {
                KeyMiss::UnknownKid => Rejection::UnknownKid,
                KeyMiss::NoKeyForAlgorithm => Rejection::Algorithm,
            })?;
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| rejection(e.kind()))
    }

    /// `forwardClaims`: strings as they are, numbers and booleans as JSON text, arrays and
    /// objects as compact JSON; absent or `null` claims, and values that cannot be a header
    /// value (control characters, non-ASCII), set no header.
    fn claim_headers(&self, claims: &serde_json::Map<String, serde_json::Value>) -> ClaimHeaders {
        let mut out = Vec::with_capacity(self.forward.len());
        for (claim, name) in &self.forward {
            let text = match claims.get(claim) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&text) {
                out.push((name.clone(), v));
            }
        }
        out
    }
}

/// The upstream header names `forwardClaims` writes: removed from every request the gateway
/// forwards (any route), so a client cannot pose as a claim.
pub fn claim_header_names(cfg: Option<&JwtConfig>) -> Vec<HeaderName> {
    cfg.map(|c| forward_headers(c).into_iter().map(|(_, h)| h).collect())
        .unwrap_or_default()
}

fn forward_headers(cfg: &JwtConfig) -> Vec<(String, HeaderName)> {
    cfg.forward_claims
        .iter()
        .filter_map(|(claim, header)| {
            Some((claim.clone(), HeaderName::try_from(header.as_str()).ok()?))
        })
        .collect()
}

fn validation(cfg: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway.secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = HashSet::new();
    if cfg.require_exp {
        required.insert("exp".to_string());
    }
    if !cfg.issuer.is_empty() {
        v.set_issuer(&[cfg.issuer.as_str()]);
        required.insert("iss".to_string());
    }
    if cfg.audience.is_empty() {
        // No audience configured: the token's `aud`, if any, is not ours to judge.
        v.validate_aud = false;
    } else {
        v.set_audience(&cfg.audience);
        required.insert("aud".to_string());
    }
    v.required_spec_claims = required;
    v
}

/// `Bearer <token>` (scheme case-insensitive, RFC 7235), the token trimmed.
fn bearer_token(value: &[u8]) -> Result<&str, Rejection> {
    let text = std::str::from_utf8(value).map_err(|_| Rejection::Malformed)?;
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::Scheme);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Oversized);
    }
    Ok(token)
}

/// A header that does not parse: `alg` outside the known names (`none`, `NONE`, ...) is an
/// algorithm rejection, anything else malformed. Only runs on the failure path.
fn header_rejection(token: &str) -> Rejection {
    use base64::Engine;
    let first = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_owned));
    match alg {
        Some(_) => Rejection::Algorithm,
        None => Rejection::Malformed,
    }
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::Crypto(_) => Rejection::Signature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Rejection::Issuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Rejection::Audience,
        ErrorKind::MissingRequiredClaim(_) => Rejection::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
        _ => Rejection::Malformed,
    }
}

/// `gogate_auth_rejected_total{route, reason}` handles of one route, resolved at build time.
pub struct AuthCounters([prometheus::IntCounter; 12]);

impl AuthCounters {
    pub fn new(metrics: &crate::Metrics, route: &str) -> Self {
        AuthCounters(Rejection::ALL.map(|r| {
            metrics
                .auth_rejected
                .with_label_values(&[route, r.reason()])
        }))
    }

    pub fn inc(&self, r: Rejection) {
        self.0[r.index()].inc();
    }
}

/// What an `auth: jwt` route carries in the snapshot.
pub struct RouteAuth {
    /// `None` when the policy could not be compiled: every request is rejected.
    pub verifier: Option<Arc<JwtVerifier>>,
    pub rejected: AuthCounters,
}

#[cfg(test)]
mod tests;
