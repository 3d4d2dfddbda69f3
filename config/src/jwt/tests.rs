//! Loading `jwt:`: value checks, key files relative to the config file, and errors that name
//! the key path and the file.

use crate::{load_str, Config, ConfigErrors};
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");

/// A config "file" in the fixtures directory, so relative key paths resolve there.
fn load(jwt: &str, routes: &str) -> Result<Config, ConfigErrors> {
    let text = format!(
        "server:\n  backends: [{{addr: \"127.0.0.1:9001\"}}]\njwt:\n{jwt}routes:\n  - name: admin\n    match: {{pathPrefix: /admin}}\n    upstreams: [{{name: default}}]\n{routes}"
    );
    load_str(&text, Some(&Path::new(FIXTURES).join("gogate.yaml")))
}

fn err(jwt: &str, routes: &str) -> String {
    load(jwt, routes)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn hs256_with_secret_and_route_auth_loads() {
    let c = load(
        "  algorithms: [HS256]\n  secret: s3cret\n  forwardClaims: {sub: X-User-Id}\n",
        "    auth: jwt\n",
    )
    .expect("valid");
    let j = c.jwt.as_ref().expect("jwt block");
    assert!(j.keys.is_some(), "keys compiled at load");
    assert!(j.require_exp);
    assert_eq!(j.leeway.secs(), 30);
    assert!(c.routes[0].requires_jwt());
}

#[test]
fn relative_key_files_resolve_against_the_config_directory() {
    let c = load(
        "  algorithms: [RS256]\n  publicKeyFile: rsa-public.pem\n  leeway: 0\n",
        "",
    )
    .expect("valid");
    assert_eq!(c.jwt.as_ref().map(|j| j.leeway.secs()), Some(0));
    let c = load(
        "  algorithms: [ES256, EdDSA, RS256]\n  jwks_file: jwks.json\n  require_exp: false\n",
        "",
    )
    .expect("valid");
    let keys = c.jwt.as_ref().and_then(|j| j.keys.clone()).expect("keys");
    assert_eq!(keys.jwks_len(), 3);
}

#[test]
fn none_and_unknown_algorithms_are_refused() {
    for none in ["none", "NONE", "None"] {
        let e = err(&format!("  algorithms: [{none}]\n  secret: x\n"), "");
        assert!(
            e.contains("jwt.algorithms[0]") && e.contains("never accepted"),
            "{e}"
        );
    }
    let e = err("  algorithms: [HS999]\n  secret: x\n", "");
    assert!(e.contains("unknown algorithm \"HS999\""), "{e}");
    let e = err("  secret: x\n", "");
    assert!(
        e.contains("jwt.algorithms") && e.contains("explicitly"),
        "{e}"
    );
}

#[test]
fn each_algorithm_family_needs_its_key_source() {
    let e = err("  algorithms: [HS256]\n", "");
    assert!(e.contains("jwt.secret") && e.contains("secretEnv"), "{e}");
    let e = err("  algorithms: [RS256]\n  secret: x\n", "");
    assert!(e.contains("jwt.publicKeyFile"), "{e}");
    let e = err(
        "  algorithms: [ES256]\n  publicKeyFile: rsa-public.pem\n",
        "",
    );
    assert!(
        e.contains("jwt.algorithms") && e.contains("ES256 needs an EC key"),
        "{e}"
    );
    let e = err(
        "  algorithms: [RS256]\n  publicKeyFile: rsa-public.pem\n  jwksFile: jwks.json\n",
        "",
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn bad_key_files_name_the_key_and_the_file() {
    let e = err("  algorithms: [RS256]\n  publicKeyFile: missing.pem\n", "");
    let missing = PathBuf::from(FIXTURES).join("missing.pem");
    assert!(
        e.contains("jwt.publicKeyFile") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    assert!(e.contains("gogate.yaml:5:"), "located on its line: {e}");
    let e = err("  algorithms: [RS256]\n  publicKeyFile: jwks.json\n", "");
    assert!(e.contains("no PEM public key"), "{e}");
    let e = err(
        "  algorithms: [RS256]\n  publicKeyFile: rsa-private.pem\n",
        "",
    );
    assert!(e.contains("private key"), "{e}");
    let e = err("  algorithms: [RS256]\n  jwksFile: rsa-public.pem\n", "");
    assert!(e.contains("jwt.jwksFile") && e.contains("not JSON"), "{e}");
}

#[test]
fn secret_env_is_read_at_load() {
    let e = err(
        "  algorithms: [HS256]\n  secretEnv: GOGATE_TEST_UNSET_SECRET_VAR\n",
        "",
    );
    assert!(
        e.contains("jwt.secretEnv") && e.contains("GOGATE_TEST_UNSET_SECRET_VAR"),
        "{e}"
    );
    let e = err("  algorithms: [HS256]\n  secret: a\n  secretEnv: B\n", "");
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn route_auth_is_checked() {
    let text = "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\nroutes:\n  - upstreams: [{name: default}]\n    auth: jwt\n";
    let e = load_str(text, None).expect_err("no jwt block").to_string();
    assert!(e.contains("routes[0].auth") && e.contains("jwt:"), "{e}");
    let e = err("  algorithms: [HS256]\n  secret: x\n", "    auth: basic\n");
    assert!(
        e.contains("routes[0].auth") && e.contains("unknown auth \"basic\""),
        "{e}"
    );
    assert!(load("  algorithms: [HS256]\n  secret: x\n", "    auth: \"\"\n").is_ok());
}

#[test]
fn forward_claims_need_valid_free_header_names() {
    let e = err(
        "  algorithms: [HS256]\n  secret: x\n  forwardClaims: {sub: \"X User\"}\n",
        "",
    );
    assert!(
        e.contains("jwt.forwardClaims.sub") && e.contains("not a valid header name"),
        "{e}"
    );
    let e = err(
        "  algorithms: [HS256]\n  secret: x\n  forwardClaims: {sub: Host}\n",
        "",
    );
    assert!(e.contains("set by the gateway"), "{e}");
    let e = err(
        "  algorithms: [HS256]\n  secret: x\n  forwardClaims: {sub: X-A, email: x-a}\n",
        "",
    );
    assert!(e.contains("one header per claim"), "{e}");
    let e = err("  algorithms: [HS256]\n  secret: x\n  secrett: y\n", "");
    assert!(e.contains("unknown field `secrett`"), "{e}");
}

#[test]
fn secrets_are_redacted_and_keys_compare_by_content() {
    let c = load("  algorithms: [HS256]\n  secret: s3cret\n", "").expect("valid");
    let json = c.redacted_json().to_string();
    assert!(
        !json.contains("s3cret") && json.contains("<redacted>"),
        "{json}"
    );
    let same = load("  algorithms: [HS256]\n  secret: s3cret\n", "").expect("valid");
    assert_eq!(c, same);
    let other = load("  algorithms: [HS256]\n  secret: other\n", "").expect("valid");
    assert_ne!(c, other);
    assert_eq!(c.without_keys().jwt.and_then(|j| j.keys), None);
}

#[test]
fn key_files_are_read_with_a_size_bound() {
    let e = err("  algorithms: [RS256]\n  publicKeyFile: /dev/zero\n", "");
    assert!(
        e.contains("jwt.publicKeyFile") && e.contains("/dev/zero") && e.contains("larger than"),
        "{e}"
    );
}

#[test]
fn debug_output_leaves_the_secret_out() {
    let c = load("  algorithms: [HS256]\n  secret: s3cret\n", "").expect("valid");
    let text = format!("{c:?}");
    assert!(
        !text.contains("s3cret") && text.contains("<redacted>"),
        "{text}"
    );
}

#[test]
fn jwk_sets_are_checked_key_by_key() {
    let dir = std::env::temp_dir().join(format!("gogate-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ec = r#"{"kty":"EC","crv":"P-256","kid":"a","x":"QLGqPcG3bhQllz0UP6jNMWPku4c0T_WIBnmMLdkcp3g","y":"rS_pEHDPy7soFGWJEuIghPFsLxvq3Y8A8Gj04CswLK8"}"#;
    let load_set = |body: &str| {
        let path = dir.join("set.json");
        std::fs::write(&path, body).expect("write set");
        let text = format!(
            "server:\n  backends: [{{addr: \"127.0.0.1:9001\"}}]\njwt:\n  algorithms: [ES256]\n  jwksFile: {}\n",
            path.display()
        );
        load_str(&text, None).map_err(|e| e.to_string())
    };
    assert!(load_set(&format!(r#"{{"keys":[{ec}]}}"#)).is_ok());
    let enc = ec.replace(r#""kid":"a""#, r#""kid":"e","use":"enc""#);
    let only_enc = load_set(&format!(r#"{{"keys":[{enc}]}}"#)).unwrap_err();
    assert!(only_enc.contains("no signing key"), "{only_enc}");
    assert!(load_set(&format!(r#"{{"keys":[{enc},{ec}]}}"#)).is_ok());
    let dup = load_set(&format!(r#"{{"keys":[{ec},{ec}]}}"#)).unwrap_err();
    assert!(dup.contains("kid is used twice"), "{dup}");
    let oct = load_set(r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#).unwrap_err();
    assert!(oct.contains("symmetric"), "{oct}");
    let wrong_alg = ec.replace(r#""kid":"a""#, r#""kid":"a","alg":"RS256""#);
    let e = load_set(&format!(r#"{{"keys":[{wrong_alg}]}}"#)).unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
    let e = load_set(r#"{"nokeys":[]}"#).unwrap_err();
    assert!(e.contains("JSON Web Key Set"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
