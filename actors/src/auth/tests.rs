//! Every kind of token the verifier must refuse, and the ones it must accept, signed with the
//! fixture keys of `tests/fixtures/jwt`.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

fn verifier(jwt: &str) -> JwtVerifier {
    let text = format!("server:\n  backends: [{{addr: \"127.0.0.1:1\"}}]\njwt:\n{jwt}");
    let cfg = gogate_config::load_str(&text, Some(&Path::new(FIXTURES).join("c.yaml")))
        .unwrap_or_else(|e| panic!("{e}"));
    JwtVerifier::new(cfg.jwt.as_ref().expect("jwt")).expect("keys compiled")
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn hs(secret: &[u8], claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn signed(
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &claims, key).unwrap()
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

const HS: &str = "  algorithms: [HS256]\n  secret: s3cret\n";

#[test]
fn hs256_token_is_accepted() {
    let v = verifier(HS);
    let t = hs(b"s3cret", json!({"sub": "alice", "exp": now() + 60}));
    assert_eq!(v.verify(&t).unwrap()["sub"], "alice");
}

#[test]
fn alg_none_in_any_case_is_refused() {
    let v = verifier(HS);
    let body = b64(&json!({"sub": "mallory", "exp": now() + 60}));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = format!("{}.{body}.", b64(&json!({"alg": alg, "typ": "JWT"})));
        assert_eq!(v.verify(&t), Err(Rejection::Algorithm), "{alg}");
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    // HS256 "signed" with the RSA public key's PEM bytes as the HMAC secret.
    let pem = fixture("rsa-public.pem");
    let t = hs(&pem, json!({"sub": "mallory", "exp": now() + 60}));
    let v = verifier("  algorithms: [RS256]\n  publicKeyFile: rsa-public.pem\n");
    assert_eq!(v.verify(&t), Err(Rejection::Algorithm));
    // Also when HS256 is allowed: its key is the secret, never the PEM.
    let v = verifier(
        "  algorithms: [RS256, HS256]\n  secret: s3cret\n  publicKeyFile: rsa-public.pem\n",
    );
    assert_eq!(v.verify(&t), Err(Rejection::Signature));
    // An RS256 token is fine there.
    let t = signed(
        Algorithm::RS256,
        None,
        &rsa_key(),
        json!({"exp": now() + 60}),
    );
    assert!(v.verify(&t).is_ok());
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let v = verifier("  algorithms: [HS256]\n  secret: s3cret\n  leeway: 0\n");
    let expired = hs(b"s3cret", json!({"exp": now() - 10}));
    assert_eq!(v.verify(&expired), Err(Rejection::Expired));
    let early = hs(b"s3cret", json!({"exp": now() + 600, "nbf": now() + 300}));
    assert_eq!(v.verify(&early), Err(Rejection::NotYetValid));
    let no_exp = hs(b"s3cret", json!({"sub": "a"}));
    assert_eq!(v.verify(&no_exp), Err(Rejection::MissingClaim));

    let lenient = verifier("  algorithms: [HS256]\n  secret: s3cret\n  leeway: 60s\n");
    assert!(
        lenient.verify(&expired).is_ok(),
        "10 s late is within 60 s leeway"
    );
    let soon = hs(b"s3cret", json!({"exp": now() + 600, "nbf": now() + 30}));
    assert!(lenient.verify(&soon).is_ok());
    let long_ago = hs(b"s3cret", json!({"exp": now() - 120}));
    assert_eq!(lenient.verify(&long_ago), Err(Rejection::Expired));

    let optional = verifier("  algorithms: [HS256]\n  secret: s3cret\n  requireExp: false\n");
    assert!(optional.verify(&no_exp).is_ok());
    assert_eq!(
        optional.verify(&long_ago),
        Err(Rejection::Expired),
        "exp still checked when present"
    );
}

#[test]
fn issuer_and_audience_are_checked_when_set() {
    let v = verifier(
        "  algorithms: [HS256]\n  secret: s3cret\n  issuer: https://idp.test\n  audience: [api, admin]\n",
    );
    let exp = now() + 60;
    let iss = "https://idp.test";
    let ok = hs(b"s3cret", json!({"iss": iss, "aud": "api", "exp": exp}));
    assert!(v.verify(&ok).is_ok());
    let arr = hs(
        b"s3cret",
        json!({"iss": iss, "aud": ["other", "admin"], "exp": exp}),
    );
    assert!(
        v.verify(&arr).is_ok(),
        "an array holding one configured audience"
    );
    let bad_aud = hs(b"s3cret", json!({"iss": iss, "aud": ["other"], "exp": exp}));
    assert_eq!(v.verify(&bad_aud), Err(Rejection::Audience));
    let no_aud = hs(b"s3cret", json!({"iss": iss, "exp": exp}));
    assert_eq!(v.verify(&no_aud), Err(Rejection::Audience));
    let bad_iss = hs(
        b"s3cret",
        json!({"iss": "https://evil.test", "aud": "api", "exp": exp}),
    );
    assert_eq!(v.verify(&bad_iss), Err(Rejection::Issuer));
    let no_iss = hs(b"s3cret", json!({"aud": "api", "exp": exp}));
    assert_eq!(v.verify(&no_iss), Err(Rejection::Issuer));
    // Without a configured audience, a token's aud is not judged.
    let plain = verifier(HS);
    assert!(plain.verify(&bad_aud).is_ok());
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let v = verifier("  algorithms: [ES256, EdDSA, RS256]\n  jwksFile: jwks.json\n");
    let ec = EncodingKey::from_ec_pem(&fixture("ec-private.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(&fixture("ed-private.pem")).unwrap();
    let claims = json!({"sub": "k", "exp": now() + 60});
    let es256 = |kid: Option<&str>| signed(Algorithm::ES256, kid, &ec, claims.clone());
    assert!(v.verify(&es256(Some("ec-1"))).is_ok());
    let eddsa = signed(Algorithm::EdDSA, Some("ed-1"), &ed, claims.clone());
    assert!(v.verify(&eddsa).is_ok());
    let rs = signed(Algorithm::RS256, Some("rsa-1"), &rsa_key(), claims.clone());
    assert!(v.verify(&rs).is_ok());
    assert_eq!(v.verify(&es256(Some("nope"))), Err(Rejection::UnknownKid));
    assert_eq!(
        v.verify(&es256(None)),
        Err(Rejection::UnknownKid),
        "no kid while the set holds several keys"
    );
    // A kid naming a key of another kind.
    assert_eq!(v.verify(&es256(Some("ed-1"))), Err(Rejection::Algorithm));
    // Right kid, wrong signer.
    let other = EncodingKey::from_rsa_pem(&fixture("rsa2-private.pem")).unwrap();
    let forged = signed(Algorithm::RS256, Some("rsa-1"), &other, claims);
    assert_eq!(v.verify(&forged), Err(Rejection::Signature));
}

#[test]
fn pem_keys_verify_rs256_and_refuse_other_signers() {
    let v = verifier("  algorithms: [RS256]\n  publicKeyFile: rsa-public.pem\n");
    let claims = json!({"exp": now() + 60});
    let good = signed(Algorithm::RS256, None, &rsa_key(), claims.clone());
    assert!(v.verify(&good).is_ok());
    let other = EncodingKey::from_rsa_pem(&fixture("rsa2-private.pem")).unwrap();
    let forged = signed(Algorithm::RS256, None, &other, claims.clone());
    assert_eq!(v.verify(&forged), Err(Rejection::Signature));
    let rs384 = signed(Algorithm::RS384, None, &rsa_key(), claims);
    assert_eq!(
        v.verify(&rs384),
        Err(Rejection::Algorithm),
        "RS384 is not on the allow-list"
    );
}

#[test]
fn header_parsing_rejections() {
    let v = verifier(HS);
    let good = hs(b"s3cret", json!({"exp": now() + 60}));
    let val = |s: &str| HeaderValue::from_str(s).unwrap();
    let check = |values: &[HeaderValue]| v.check(values.iter()).err();
    assert_eq!(check(&[]), Some(Rejection::Missing));
    assert_eq!(check(&[val("Bearer")]), Some(Rejection::Missing));
    assert_eq!(check(&[val("Basic YTpi")]), Some(Rejection::Scheme));
    assert_eq!(check(&[val("Bearer abc")]), Some(Rejection::Malformed));
    assert_eq!(check(&[val("Bearer a.b.c")]), Some(Rejection::Malformed));
    let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    assert_eq!(check(&[val(&big)]), Some(Rejection::Oversized));
    let bearer = format!("Bearer {good}");
    assert_eq!(
        check(&[val(&bearer), val(&bearer)]),
        Some(Rejection::Malformed)
    );
    assert_eq!(check(&[val(&format!("bearer  {good} "))]), None);
    assert!(Rejection::Malformed.invalid_token() && !Rejection::Scheme.invalid_token());
}

#[test]
fn claims_become_headers() {
    let v = verifier(
        "  algorithms: [HS256]\n  secret: s3cret\n  forwardClaims: {sub: X-User-Id, n: X-N, admin: X-Admin, roles: X-Roles, org: X-Org, bad: X-Bad, gone: X-Gone}\n",
    );
    let t = hs(
        b"s3cret",
        json!({"sub": "alice", "n": 42, "admin": true, "roles": ["a", "b"], "org": {"id": 1},
               "bad": "line\r\nbreak", "exp": now() + 60}),
    );
    let auth = HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let headers = v.check([auth].iter()).unwrap();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.as_str() == n)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(get("x-user-id").as_deref(), Some("alice"));
    assert_eq!(get("x-n").as_deref(), Some("42"));
    assert_eq!(get("x-admin").as_deref(), Some("true"));
    assert_eq!(get("x-roles").as_deref(), Some(r#"["a","b"]"#));
    assert_eq!(get("x-org").as_deref(), Some(r#"{"id":1}"#));
    assert_eq!(get("x-bad"), None, "not a valid header value");
    assert_eq!(get("x-gone"), None);
}

mod cache {
    use super::*;
    use crate::auth::{TokenCache, MAX_CACHED_TOKENS};

    fn auth(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
    }

    const POLICY: &str =
        "  algorithms: [HS256]\n  secret: s3cret\n  leeway: 10s\n  forwardClaims: {sub: X-User}\n";

    #[test]
    fn a_remembered_token_gives_the_same_claims_and_a_bad_one_is_never_remembered() {
        let v = verifier(POLICY);
        let mut cache = TokenCache::default();
        let good = hs(b"s3cret", json!({"sub": "alice", "exp": now() + 60}));
        let t = now() as u64;
        let first = v.check_cached(&mut cache, [auth(&good)].iter(), t);
        let again = v.check_cached(&mut cache, [auth(&good)].iter(), t);
        assert_eq!(first, again);
        assert_eq!(first.expect("accepted")[0].1, "alice");
        assert_eq!(cache.len(), 1);
        let forged = hs(b"other", json!({"sub": "mallory", "exp": now() + 60}));
        for _ in 0..2 {
            let r = v.check_cached(&mut cache, [auth(&forged)].iter(), t);
            assert_eq!(r, Err(Rejection::Signature));
        }
        assert_eq!(cache.len(), 1, "a refused token is not remembered");
    }

    #[test]
    fn time_claims_are_checked_again_on_every_hit_with_the_leeway() {
        let v = verifier(POLICY);
        let mut cache = TokenCache::default();
        let t = now() as u64;
        let exp = t + 30;
        let token = hs(b"s3cret", json!({"sub": "alice", "exp": exp}));
        assert!(v.check_cached(&mut cache, [auth(&token)].iter(), t).is_ok());
        assert!(cache.lookup(&v, &token, t).is_some());
        // Until exp + leeway (10 s) it is answered from the cache; one second later it is not,
        // and the stale entry is dropped.
        assert!(cache.lookup(&v, &token, exp + 10).is_some());
        assert!(cache.lookup(&v, &token, exp + 11).is_none());
        assert!(cache.is_empty());
        // nbf likewise: remembered at a time it held, not answered before nbf - leeway.
        let nbf = t - 5;
        let token = hs(b"s3cret", json!({"sub": "bob", "exp": t + 60, "nbf": nbf}));
        assert!(v.check_cached(&mut cache, [auth(&token)].iter(), t).is_ok());
        assert!(cache.lookup(&v, &token, nbf - 10).is_some());
        assert!(cache.lookup(&v, &token, nbf - 11).is_none());
        // A token not valid yet is refused and not remembered.
        let early = hs(
            b"s3cret",
            json!({"sub": "eve", "exp": t + 7200, "nbf": t + 3600}),
        );
        assert_eq!(
            v.check_cached(&mut cache, [auth(&early)].iter(), t),
            Err(Rejection::NotYetValid)
        );
        assert!(cache.lookup(&v, &early, t + 3600).is_none());
    }

    #[test]
    fn another_policy_starts_the_cache_afresh_and_it_stays_bounded() {
        let v1 = verifier(POLICY);
        let mut cache = TokenCache::default();
        let t = now() as u64;
        for i in 0..(MAX_CACHED_TOKENS + 5) {
            let token = hs(
                b"s3cret",
                json!({"sub": format!("u{i}"), "exp": now() + 60}),
            );
            assert!(v1
                .check_cached(&mut cache, [auth(&token)].iter(), t)
                .is_ok());
            assert!(cache.len() <= MAX_CACHED_TOKENS);
        }
        // The same secret under a new policy (a reload): nothing carried over.
        let v2 = verifier("  algorithms: [HS256]\n  secret: n3w\n  forwardClaims: {sub: X-User}\n");
        let old = hs(b"s3cret", json!({"sub": "alice", "exp": now() + 60}));
        assert!(v1.check_cached(&mut cache, [auth(&old)].iter(), t).is_ok());
        assert_eq!(
            v2.check_cached(&mut cache, [auth(&old)].iter(), t),
            Err(Rejection::Signature),
            "a token remembered under the old keys is checked under the new ones"
        );
    }
}
