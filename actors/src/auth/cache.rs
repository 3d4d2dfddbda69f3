//! A worker's memory of the tokens it has already verified, so that a client sending the same
//! token on every request pays for the signature check once (an RS256 check costs more than
//! proxying the request). Per worker and used from its thread only: no lock.
//!
//! What makes it safe:
//! - An entry is the whole token text (a lookup compares it in full), and only tokens that
//!   passed the complete check are stored.
//! - Entries belong to one compiled policy ([`JwtVerifier`]'s `id`, unique per snapshot): a
//!   reload (new keys, issuer, audience, algorithms) starts the cache afresh.
//! - The time claims are checked again on every hit, with the policy's leeway, exactly as
//!   `jsonwebtoken` checks them (`exp + leeway >= now`, `nbf <= now + leeway`); a token that
//!   has expired since is dropped and goes through the full check, which refuses it.
//! - It is bounded: at most [`MAX_CACHED_TOKENS`] tokens of at most [`MAX_CACHED_TOKEN_BYTES`]
//!   each (longer ones are always checked in full); when full, it starts afresh.

use super::{ClaimHeaders, JwtVerifier, Rejection};
use actix_http::header::HeaderValue;
use std::collections::HashMap;

/// Tokens a worker remembers at most.
pub const MAX_CACHED_TOKENS: usize = 512;
/// Longer tokens are never remembered (bounds the cache to about 2 MiB per worker).
pub const MAX_CACHED_TOKEN_BYTES: usize = 4 * 1024;

/// What a verified token gave, and until when it holds.
struct Verified {
    claims: ClaimHeaders,
    exp: Option<u64>,
    nbf: Option<u64>,
}

/// The verified tokens of one worker, for one compiled policy at a time.
#[derive(Default)]
pub struct TokenCache {
    policy: u64,
    entries: HashMap<Box<str>, Verified>,
}

impl TokenCache {
    /// The claims of `token` if `verifier` (this very policy) accepted it before and its time
    /// claims still hold at `now`; an entry that no longer holds is dropped.
    pub(super) fn lookup(
        &mut self,
        verifier: &JwtVerifier,
        token: &str,
        now: u64,
    ) -> Option<ClaimHeaders> {
        if self.policy != verifier.id {
            self.entries.clear();
            self.policy = verifier.id;
        }
        let hit = self.entries.get(token)?;
        if verifier.times_hold(hit, now) {
            return Some(hit.claims.clone());
        }
        self.entries.remove(token);
        None
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl JwtVerifier {
    /// [`check`](Self::check), answered from `cache` when this token was verified before under
    /// this policy and its time claims still hold at `now` (seconds since the epoch).
    pub fn check_cached<'a>(
        &self,
        cache: &mut TokenCache,
        mut authorization: impl Iterator<Item = &'a HeaderValue>,
        now: u64,
    ) -> Result<ClaimHeaders, Rejection> {
        let Some(value) = authorization.next() else {
            return Err(Rejection::Missing);
        };
        if authorization.next().is_some() {
            return Err(Rejection::Malformed);
        }
        let token = super::bearer_token(value.as_bytes())?;
        if let Some(claims) = cache.lookup(self, token, now) {
            return Ok(claims);
        }
        let claims = self.verify(token)?;
        let headers = self.claim_headers(&claims);
        if token.len() <= MAX_CACHED_TOKEN_BYTES {
            if cache.entries.len() >= MAX_CACHED_TOKENS {
                cache.entries.clear();
            }
            let time = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
            let entry = Verified {
                claims: headers.clone(),
                exp: time("exp"),
                nbf: time("nbf"),
            };
            cache.entries.insert(token.into(), entry);
        }
        Ok(headers)
    }

    fn times_hold(&self, v: &Verified, now: u64) -> bool {
        v.exp
            .is_none_or(|exp| exp.saturating_add(self.leeway) >= now)
            && v.nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(self.leeway))
    }
}
