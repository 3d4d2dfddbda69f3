//! JWT authentication (route `auth: jwt`, top-level `jwt:`) and path normalisation through a real
//! gateway and real upstreams: every kind of refused token gets 401 and never reaches the
//! upstream, accepted tokens forward their claims, client-sent claim headers are removed on
//! every route, a protected route cannot be reached through a looser one by spelling its path
//! differently, and key files rotate with a reload.
mod common;
use common::config_file::*;
use common::*;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const SECRET: &str = "test-secret-of-32-bytes-at-least!";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn token(
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &claims, key).expect("sign")
}

fn hs256(claims: serde_json::Value) -> String {
    token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture_bytes(name)).expect("rsa key")
}

fn b64(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Default upstream `up`, route `admin` (`/admin`, `auth: jwt`) and route `public` (`/public`).
fn yaml(up: &RunningUpstream, jwt: &str) -> String {
    format!(
        "server:\n  listenAddr: \"\"\n  backends: [{{addr: \"{}\"}}]\n  health: {{enabled: false}}\njwt:\n{jwt}routes:\n  - name: admin\n    match: {{pathPrefix: /admin}}\n    upstreams: [{{name: default}}]\n    auth: jwt\n  - name: public\n    match: {{pathPrefix: /public}}\n    upstreams: [{{name: default}}]\n",
        up.addr_str()
    )
}

fn hs_policy() -> String {
    format!(
        "  algorithms: [HS256]\n  secret: \"{SECRET}\"\n  issuer: https://idp.test\n  audience: [gogate]\n  leeway: 0\n  forwardClaims: {{sub: X-User-Id, roles: X-User-Roles}}\n"
    )
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "alice", "roles": ["admin", "ops"], "iss": "https://idp.test",
           "aud": "gogate", "exp": now() + 300})
}

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = awc::Client::default().get(gw.url(path));
    for (k, v) in headers {
        req = req.append_header((*k, *v));
    }
    fetch(req).await
}

async fn bearer(gw: &TestGateway, path: &str, token: &str) -> Resp {
    get_with(gw, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// A 401 as DESIGN B4 describes it: JSON `{error, request_id}` and the Bearer challenge.
fn assert_401(r: &Resp, invalid: bool, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    let body = r.json();
    assert!(body["error"].is_string(), "{what}: {body}");
    assert_eq!(
        body["request_id"].as_str(),
        r.header("x-request-id"),
        "{what}"
    );
    let want = if invalid {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    assert_eq!(r.header("www-authenticate"), Some(want), "{what}");
}

fn metric(text: &str, route: &str, reason: &str) -> u64 {
    let prefix = format!("gogate_auth_rejected_total{{reason=\"{reason}\",route=\"{route}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn every_refused_token_kind_gets_401_and_never_reaches_the_upstream() {
    let up = Upstream::new("up").start().await;
    let gw = gateway(&yaml(&up, &hs_policy())).await;
    let exp = now() + 300;
    let good = good_claims();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let pem = fixture_bytes("rsa-public.pem");
    let none = |alg: &str| {
        format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&good)
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", none("none"), "algorithm"),
        ("alg NONE", none("NONE"), "algorithm"),
        (
            "algorithm confusion",
            token(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(&pem),
                good.clone(),
            ),
            "signature",
        ),
        (
            "RS256 not on the allow-list",
            token(
                Algorithm::RS256,
                None,
                &rsa("rsa-private.pem"),
                good.clone(),
            ),
            "algorithm",
        ),
        ("expired", hs256(with("exp", json!(now() - 5))), "expired"),
        (
            "nbf in the future",
            hs256(with("nbf", json!(now() + 120))),
            "not_yet_valid",
        ),
        (
            "wrong iss",
            hs256(with("iss", json!("https://evil.test"))),
            "issuer",
        ),
        (
            "wrong aud",
            hs256(with("aud", json!(["other"]))),
            "audience",
        ),
        (
            "no exp",
            hs256(json!({"iss": "https://idp.test", "aud": "gogate"})),
            "missing_claim",
        ),
        ("malformed", "not.a.jwt".to_string(), "malformed"),
        (
            "tampered",
            {
                let t = hs256(good.clone());
                let (head, sig) = t.rsplit_once('.').expect("three parts");
                let forged = b64(&with("sub", json!("root")));
                let head = head.split('.').next().expect("header");
                format!("{head}.{forged}.{sig}")
            },
            "signature",
        ),
        (
            "oversized",
            hs256(with("pad", json!("x".repeat(9000)))),
            "oversized",
        ),
    ];
    for (what, tok, reason) in &cases {
        let r = bearer(&gw, "/admin/users", tok).await;
        assert_401(&r, true, what);
        let text = gw.metrics_text().await;
        assert!(
            metric(&text, "admin", reason) >= 1,
            "{what}: {reason}\n{text}"
        );
    }
    let r = get_with(&gw, "/admin", &[]).await;
    assert_401(&r, false, "missing");
    let r = get_with(&gw, "/admin", &[("authorization", "Basic YWxpY2U6cHc=")]).await;
    assert_401(&r, false, "wrong scheme");
    let r = get_with(&gw, "/admin", &[("authorization", "Bearer ")]).await;
    assert_401(&r, false, "empty bearer");
    assert_eq!(up.hits(), 0, "no refused request reached the upstream");

    let text = gw.metrics_text().await;
    assert_eq!(metric(&text, "admin", "missing"), 2, "{text}");
    assert_eq!(metric(&text, "admin", "scheme"), 1, "{text}");
    // The reason is in the debug log, not in the response.
    let logged = gw.logs.with_msg("request refused by jwt auth");
    assert!(
        logged.iter().any(|l| l["reason"] == "expired"),
        "{logged:?}"
    );

    // The same request with a good token passes (the refusals were about the tokens).
    let r = bearer(
        &gw,
        "/admin/users",
        &hs256(
            json!({"sub": "alice", "iss": "https://idp.test", "aud": ["x", "gogate"], "exp": exp}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn accepted_token_forwards_claims_and_client_claim_headers_are_removed_everywhere() {
    let up = Upstream::new("up").start().await;
    let gw = gateway(&yaml(&up, &hs_policy())).await;
    let tok = hs256(good_claims());
    let spoof = [
        ("authorization", format!("Bearer {tok}")),
        ("x-user-id", "mallory".to_string()),
        ("X-User-Roles", "root".to_string()),
    ];
    let spoof: Vec<(&str, &str)> = spoof.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let r = get_with(&gw, "/admin/x", &spoof).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.last();
    assert_eq!(seen.header_all("x-user-id"), ["alice"]);
    assert_eq!(seen.header_all("x-user-roles"), [r#"["admin","ops"]"#]);

    // A route without auth, and the default upstream (no route): the client's copies are
    // removed and nothing is added.
    for path in ["/public/x", "/elsewhere"] {
        let r = get_with(&gw, path, &spoof[1..]).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let seen = up.last();
        assert!(seen.header("x-user-id").is_none(), "{path}: {seen:?}");
        assert!(seen.header("x-user-roles").is_none(), "{path}: {seen:?}");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn rs256_pem_and_jwks_keys_by_kid() {
    let up = Upstream::new("up").start().await;
    let claims = json!({"sub": "k", "exp": now() + 300});

    let pem = format!(
        "  algorithms: [RS256]\n  publicKeyFile: \"{}\"\n",
        fixture("rsa-public.pem").display()
    );
    let gw = gateway(&yaml(&up, &pem)).await;
    let r = bearer(
        &gw,
        "/admin",
        &token(
            Algorithm::RS256,
            None,
            &rsa("rsa-private.pem"),
            claims.clone(),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = bearer(
        &gw,
        "/admin",
        &token(
            Algorithm::RS256,
            None,
            &rsa("rsa2-private.pem"),
            claims.clone(),
        ),
    )
    .await;
    assert_401(&r, true, "another RSA key");
    gw.stop().await;

    let jwks = format!(
        "  algorithms: [ES256, EdDSA]\n  jwksFile: \"{}\"\n",
        fixture("jwks.json").display()
    );
    let gw = gateway(&yaml(&up, &jwks)).await;
    let ec = EncodingKey::from_ec_pem(&fixture_bytes("ec-private.pem")).expect("ec key");
    let ed = EncodingKey::from_ed_pem(&fixture_bytes("ed-private.pem")).expect("ed key");
    let r = bearer(
        &gw,
        "/admin",
        &token(Algorithm::ES256, Some("ec-1"), &ec, claims.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "ES256 by kid: {r:?}");
    let r = bearer(
        &gw,
        "/admin",
        &token(Algorithm::EdDSA, Some("ed-1"), &ed, claims.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "EdDSA by kid: {r:?}");
    let hits = up.hits();
    let r = bearer(
        &gw,
        "/admin",
        &token(Algorithm::ES256, Some("ec-9"), &ec, claims.clone()),
    )
    .await;
    assert_401(&r, true, "unknown kid");
    let r = bearer(
        &gw,
        "/admin",
        &token(Algorithm::ES256, None, &ec, claims.clone()),
    )
    .await;
    assert_401(&r, true, "no kid with several keys");
    let rs = token(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa("rsa-private.pem"),
        claims,
    );
    let r = bearer(&gw, "/admin", &rs).await;
    assert_401(
        &r,
        true,
        "RS256 not allowed even though the set has its key",
    );
    assert_eq!(up.hits(), hits);
    let text = gw.metrics_text().await;
    assert_eq!(metric(&text, "admin", "unknown_kid"), 2, "{text}");
    gw.stop().await;
}

#[actix_rt::test]
async fn audience_arrays_leeway_and_optional_exp() {
    let up = Upstream::new("up").start().await;
    let policy = format!(
        "  algorithms: [HS256]\n  secret: \"{SECRET}\"\n  audience: [api, gogate]\n  leeway: 60s\n  requireExp: false\n"
    );
    let gw = gateway(&yaml(&up, &policy)).await;
    let cases = [
        (
            json!({"aud": ["x", "gogate"]}),
            200,
            "aud array with one configured audience",
        ),
        (json!({"aud": "api"}), 200, "aud string"),
        (json!({"aud": ["x", "y"]}), 401, "aud array without one"),
        (
            json!({"aud": "api", "exp": now() - 20}),
            200,
            "expired within leeway",
        ),
        (
            json!({"aud": "api", "exp": now() - 120}),
            401,
            "expired beyond leeway",
        ),
        (
            json!({"aud": "api", "nbf": now() + 20}),
            200,
            "nbf within leeway",
        ),
    ];
    for (claims, status, what) in cases {
        let r = bearer(&gw, "/admin", &hs256(claims)).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
    }
    gw.stop().await;
}

/// The status line's code of a raw exchange.
fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

async fn raw_get(gw: &TestGateway, target: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n");
    raw_exchange(
        gw.http.expect("http listener"),
        req.as_bytes(),
        Duration::from_secs(5),
    )
    .await
}

#[actix_rt::test]
async fn a_protected_route_cannot_be_reached_by_respelling_its_path() {
    let up = Upstream::new("up").start().await;
    // `/` is an open catch-all route here, the loosest possible neighbour of `/admin`.
    let y = yaml(&up, &hs_policy())
        + "  - name: open\n    match: {pathPrefix: /}\n    upstreams: [{name: default}]\n";
    let gw = gateway(&y).await;
    let variants = [
        ("/public/../admin", 401),
        ("/%2e%2e/admin", 400),
        ("/%2E%2E/admin", 400),
        ("/public/%2e%2e/admin", 401),
        ("/public/%2E%2e/admin/x", 401),
        ("//admin", 401),
        ("///admin//x", 401),
        ("/admin;x", 401),
        ("/admin;x/y", 401),
        ("/./admin", 401),
        ("/admin/", 401),
        ("/admin/.", 401),
        ("/x/../admin/", 401),
        ("/%61dmin", 401),
        ("/public/..;/admin", 400),
        ("/;x/admin", 400),
        ("/admin%2fx", 400),
        ("/public%2F..%2Fadmin", 400),
        ("/admin%5cx", 400),
        ("/public\\..\\admin", 400),
        ("/admin%00", 400),
        ("/admin%3bx", 400),
        ("/adm%zzin", 400),
        ("/..", 400),
    ];
    for (target, want) in variants {
        let raw = raw_get(&gw, target, None).await;
        let status = status_of(&raw);
        assert_eq!(status, want, "{target}: {raw}");
        assert_eq!(
            up.hits(),
            0,
            "{target} reached the upstream unauthenticated"
        );
    }

    // With a token the normalised path is what the upstream receives; parameters are kept and
    // the query is forwarded as sent.
    let tok = hs256(good_claims());
    for (target, seen_path) in [
        ("/public/../admin?a=%2e%2e", "/admin?a=%2e%2e"),
        ("//admin//x", "/admin/x"),
        ("/admin;jsessionid=1/x", "/admin;jsessionid=1/x"),
        ("/%61dmin/%7Eu", "/admin/~u"),
    ] {
        let raw = raw_get(&gw, target, Some(&tok)).await;
        assert_eq!(status_of(&raw), 200, "{target}: {raw}");
        assert_eq!(up.last().path, seen_path, "{target}");
    }
    // The open route serves normalised paths too.
    let raw = raw_get(&gw, "/a/./b/../c", None).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(up.last().path, "/a/c");
    gw.stop().await;
}

#[actix_rt::test]
async fn strip_prefix_works_on_normalised_paths_with_parameters() {
    let up = Upstream::new("up").start().await;
    let y = format!(
        "server:\n  listenAddr: \"\"\n  backends: [{{addr: \"{}\"}}]\n  health: {{enabled: false}}\nroutes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    stripPrefix: true\n",
        up.addr_str()
    );
    let gw = gateway(&y).await;
    for (target, seen) in [
        ("/api/x", "/x"),
        ("/api;v=2/x?q=1", "/x?q=1"),
        ("//api/./x", "/x"),
        ("/api", "/"),
    ] {
        let raw = raw_get(&gw, target, None).await;
        assert_eq!(status_of(&raw), 200, "{target}: {raw}");
        assert_eq!(up.last().path, seen, "{target}");
    }
    gw.stop().await;
}

fn file_yaml(up: &RunningUpstream) -> String {
    format!(
        "server:\n  listenAddr: \"\"\n  backends: [{{addr: \"{}\"}}]\n  health: {{enabled: false}}\njwt:\n  algorithms: [RS256]\n  publicKeyFile: keys/jwt.pem\n  forwardClaims: {{sub: X-User-Id}}\nroutes:\n  - name: admin\n    match: {{pathPrefix: /admin}}\n    upstreams: [{{name: default}}]\n    auth: jwt\n",
        up.addr_str()
    )
}

/// A gateway started from a file whose JWT key is `keys/jwt.pem` (the `rsa-public.pem`
/// fixture), with a token signed by that key (`old`) and one by the key it rotates to (`new`).
struct Rotation {
    _up: RunningUpstream,
    dir: TempDir,
    key_path: PathBuf,
    gw: TestGateway,
    old: String,
    new: String,
}

impl Rotation {
    async fn start() -> Rotation {
        let up = Upstream::new("up").start().await;
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.path("keys")).expect("keys dir");
        let key_path = dir.path("keys/jwt.pem");
        std::fs::copy(fixture("rsa-public.pem"), &key_path).expect("copy key");
        let config = dir.path("gogate.yaml");
        write_config(&config, &file_yaml(&up));
        let gw = gateway_from_file(&config).await;
        let claims = json!({"sub": "alice", "exp": now() + 300});
        let old = token(
            Algorithm::RS256,
            None,
            &rsa("rsa-private.pem"),
            claims.clone(),
        );
        let new = token(Algorithm::RS256, None, &rsa("rsa2-private.pem"), claims);
        Rotation {
            _up: up,
            dir,
            key_path,
            gw,
            old,
            new,
        }
    }
}

#[actix_rt::test]
async fn key_files_rotate_on_reload_and_a_bad_one_keeps_the_old_keys() {
    let Rotation {
        _up,
        dir: _dir,
        key_path,
        gw,
        old,
        new,
    } = Rotation::start().await;
    assert_eq!(bearer(&gw, "/admin", &old).await.status, 200);
    assert_eq!(bearer(&gw, "/admin", &new).await.status, 401);

    // Rotation: the key file changes, the YAML does not; a reload picks the new key up (or
    // the watcher already did: key files are watched like the config file).
    std::fs::copy(fixture("rsa2-public.pem"), &key_path).expect("rotate key");
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bearer(&gw, "/admin", &new).await.status, 200);
    assert_401(
        &bearer(&gw, "/admin", &old).await,
        true,
        "the rotated-out key",
    );

    // A broken key file fails the reload, names the file, and the current key keeps working.
    for broken in ["not a key\n", ""] {
        std::fs::write(&key_path, broken).expect("break key");
        let r = gw.admin_send("POST", "/reload").await;
        assert_eq!(r.status, 400, "{}", r.body);
        let err = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            err.contains("jwt.publicKeyFile") && err.contains(&key_path.display().to_string()),
            "{err}"
        );
        assert_eq!(bearer(&gw, "/admin", &new).await.status, 200);
        assert_eq!(bearer(&gw, "/admin", &old).await.status, 401);
    }
    std::fs::remove_file(&key_path).expect("remove key");
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("jwt.pem"), "{}", r.body);
    assert_eq!(bearer(&gw, "/admin", &new).await.status, 200);
    gw.stop().await;
}

/// A key file rotated on disk applies without any reload request: the watcher sees it (an
/// atomic rename, as a Kubernetes Secret update or `mv` does).
#[actix_rt::test]
async fn a_key_file_rotated_on_disk_applies_without_a_reload_request() {
    let Rotation {
        _up,
        dir,
        key_path,
        gw,
        old,
        new,
    } = Rotation::start().await;
    assert_eq!(bearer(&gw, "/admin", &old).await.status, 200);
    let staged = dir.path("keys/.jwt.pem.new");
    std::fs::copy(fixture("rsa2-public.pem"), &staged).expect("stage key");
    std::fs::rename(&staged, &key_path).expect("rotate key");
    eventually("the rotated key is accepted", || async {
        bearer(&gw, "/admin", &new).await.status == 200
    })
    .await;
    assert_eq!(bearer(&gw, "/admin", &old).await.status, 401);
    gw.stop().await;
}

#[test]
fn validate_and_startup_name_a_bad_key_file() {
    let dir = TempDir::new();
    let config = dir.path("gogate.yaml");
    let y = "server:\n  backends: [{addr: \"127.0.0.1:9\"}]\njwt:\n  algorithms: [RS256]\n  publicKeyFile: missing.pem\nroutes:\n  - upstreams: [{name: default}]\n    auth: jwt\n";
    std::fs::write(&config, y).expect("write config");
    let bin = std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").into());
    for args in [vec!["validate", "-config"], vec!["-config"]] {
        let out = std::process::Command::new(&bin)
            .args(&args)
            .arg(&config)
            .output()
            .expect("run gogate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("jwt.publicKeyFile")
                && stderr.contains(&dir.path("missing.pem").display().to_string()),
            "{args:?}: {stderr}"
        );
    }
    std::fs::copy(fixture("rsa-public.pem"), dir.path("missing.pem")).expect("copy key");
    let out = std::process::Command::new(&bin)
        .args(["validate", "-config"])
        .arg(&config)
        .output()
        .expect("run gogate");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configuration OK"
    );
}

#[actix_rt::test]
async fn concurrent_keep_alive_clients_mixing_tokens_each_get_their_answer() {
    let up = Upstream::new("up").start().await;
    let gw = try_gateway_with_workers(&yaml(&up, &hs_policy()), 2)
        .await
        .expect("gateway");
    let url = gw.url("/admin/data");
    let good = hs256(good_claims());
    let expired =
        hs256(json!({"sub": "x", "iss": "https://idp.test", "aud": "gogate", "exp": now() - 5}));
    let mut tasks = Vec::new();
    for client in 0..6usize {
        let (url, good, expired) = (url.clone(), good.clone(), expired.clone());
        tasks.push(actix_rt::spawn(async move {
            // Half the clients keep one connection alive, half open a new one per request.
            let keep = awc::Client::default();
            let mut answers = Vec::new();
            for i in 0..24usize {
                let c = if client % 2 == 0 {
                    keep.clone()
                } else {
                    awc::Client::default()
                };
                let kind = (client + i) % 3;
                let mut req = c.get(&url);
                if client % 2 == 1 {
                    req = req.insert_header(("connection", "close"));
                }
                let req = match kind {
                    0 => req.insert_header(("authorization", format!("Bearer {good}"))),
                    1 => req.insert_header(("authorization", format!("Bearer {expired}"))),
                    _ => req,
                };
                let r = fetch(req).await;
                let want = if kind == 0 { 200 } else { 401 };
                answers.push((
                    client,
                    i,
                    r.status,
                    want,
                    r.header("www-authenticate").map(str::to_owned),
                ));
            }
            answers
        }));
    }
    let mut ok = 0;
    for t in tasks {
        for (client, i, status, want, challenge) in t.await.expect("client task") {
            assert_eq!(status, want, "client {client} request {i}");
            if want == 401 {
                assert!(challenge.is_some(), "client {client} request {i}");
            } else {
                ok += 1;
            }
        }
    }
    assert_eq!(up.hits(), ok, "only accepted requests reached the upstream");
    for seen in up.seen.lock().expect("seen").iter() {
        assert_eq!(seen.header("x-user-id"), Some("alice"));
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn clients_keep_their_answers_across_a_reload_that_changes_the_secret() {
    let up = Upstream::new("up").start().await;
    let dir = TempDir::new();
    let config = dir.path("gogate.yaml");
    let policy = |secret: &str| {
        yaml(
            &up,
            &format!("  algorithms: [HS256]\n  secret: \"{secret}\"\n"),
        )
    };
    write_config(&config, &policy(SECRET));
    let gw = gateway_from_file(&config).await;
    let claims = json!({"sub": "a", "exp": now() + 300});
    let old = hs256(claims.clone());
    let new_secret = "another-secret-of-32-bytes-long!!";
    let new = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(new_secret.as_bytes()),
        claims,
    );
    let url = gw.url("/admin");
    // Keep-alive clients send old, new and missing tokens while the secret changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (url, old, new, stop) = (url.clone(), old.clone(), new.clone(), stop.clone());
        tasks.push(actix_rt::spawn(async move {
            let c = awc::Client::default();
            let mut bad = Vec::new();
            for i in 0..400usize {
                if stop.load(std::sync::atomic::Ordering::SeqCst) && i > 10 {
                    break;
                }
                let (tok, kind) = match i % 3 {
                    0 => (Some(&old), "old"),
                    1 => (Some(&new), "new"),
                    _ => (None, "none"),
                };
                let mut req = c.get(&url);
                if let Some(t) = tok {
                    req = req.insert_header(("authorization", format!("Bearer {t}")));
                }
                let r = fetch(req).await;
                // Either secret may be in force at this moment; nothing else is acceptable.
                let fine = match kind {
                    "none" => r.status == 401 && r.header("www-authenticate") == Some("Bearer"),
                    _ => r.status == 200 || r.status == 401,
                };
                if !fine {
                    bad.push((i, kind, r.status));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            bad
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_config(&config, &policy(new_secret));
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        let bad = t.await.expect("client task");
        assert!(bad.is_empty(), "unexpected answers: {bad:?}");
    }
    assert_eq!(bearer(&gw, "/admin", &new).await.status, 200);
    assert_eq!(bearer(&gw, "/admin", &old).await.status, 401);
    gw.stop().await;
}

#[actix_rt::test]
async fn refused_uploads_and_upgrades_never_reach_the_upstream() {
    let up = Upstream::new("up").start().await;
    let gw = gateway(&yaml(&up, &hs_policy())).await;
    let addr = gw.http.expect("http listener");
    // The gateway never reads a refused request's body, and never takes it for a request.
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let post = format!(
        "POST /admin/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let raw = raw_exchange(addr, post.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("connection: close"),
        "{raw}"
    );
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "one answer: {raw}");
    // A WebSocket handshake is authenticated like any request.
    let ws = b"GET /admin/socket HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let raw = raw_exchange(addr, ws, Duration::from_secs(2)).await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert_eq!(up.hits(), 0);
    // GET /config shows the secret redacted.
    let info = gw.admin_get("/config").await.json();
    assert_eq!(info["config"]["jwt"]["secret"], "<redacted>", "{info}");
    assert!(!info.to_string().contains(SECRET));
    gw.stop().await;
}
