use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::identity::tokens::{AccessClaims, KeyAlg, KeyConfig, TokenKeys};
use serde_json::json;

use crate::helpers::*;

fn keys(s: &Stack, iss: &str, aud: &str) -> TokenKeys {
    let pem = std::fs::read_to_string(s.env.data_dir().join("keys/access-token.key.pem")).unwrap();
    TokenKeys::new(&[], Some(&pem), iss, aud, 10).unwrap()
}

fn claims(sub: &str, iat: i64, exp: i64, roles: &[&str]) -> AccessClaims {
    AccessClaims {
        iss: String::new(),
        aud: String::new(),
        sub: sub.into(),
        exp,
        iat,
        nbf: iat,
        jti: uuid::Uuid::new_v4().to_string(),
        sid: String::new(),
        scope: None,
        client_id: None,
        azp: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        username: "admin".into(),
        amr: Vec::new(),
        acr: None,
        auth_time: None,
        extra: Default::default(),
    }
}

#[actix_web::test]
async fn every_bad_token_is_a_401_challenge() {
    let s = spawn_stack().await;
    let r = s.login("admin", ADMIN_PASSWORD).await;
    let good = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let sub = s.get(&good, "/api/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    let k = keys(&s, "gatehouse", "gatehouse-api");
    assert_eq!(
        s.get(
            &k.sign(claims(&sub, now, now + 60, &["admin"])).unwrap(),
            "/api/users"
        )
        .await
        .status,
        200,
        "control"
    );

    let parts: Vec<&str> = good.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let pub_pem =
        std::fs::read_to_string(s.env.data_dir().join("keys/access-token.pub.pem")).unwrap();
    let hs256_with_public_key = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.into());
        let mut c = claims(&sub, now, now + 60, &["admin"]);
        c.iss = "gatehouse".into();
        c.aud = "gatehouse-api".into();
        jsonwebtoken::encode(
            &h,
            &c,
            &jsonwebtoken::EncodingKey::from_secret(pub_pem.as_bytes()),
        )
        .unwrap()
    };
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        parts[1]
    );
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["admin", "superuser"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(payload), parts[2]);
    let mut nbf_later = claims(&sub, now, now + 600, &["admin"]);
    nbf_later.nbf = now + 300;
    let stranger = TokenKeys::new(
        &[],
        Some(&common::keys::generate_ed25519().unwrap().private_pem),
        "gatehouse",
        "gatehouse-api",
        10,
    )
    .unwrap();
    let proof = {
        let pem =
            std::fs::read_to_string(s.env.data_dir().join("keys/gateway-proof.key.pem")).unwrap();
        common::identity::ProofMinter::from_pem(&pem, "gateway", 60)
            .unwrap()
            .mint("gatehouse-api", &common::identity::Principal::Gateway)
            .unwrap()
            .to_string()
    };
    let bad = [
        (
            "expired",
            k.sign(claims(&sub, now - 1000, now - 100, &["admin"]))
                .unwrap(),
        ),
        ("not yet valid", k.sign(nbf_later).unwrap()),
        (
            "wrong aud",
            keys(&s, "gatehouse", "elsewhere")
                .sign(claims(&sub, now, now + 60, &["admin"]))
                .unwrap(),
        ),
        (
            "wrong iss",
            keys(&s, "mallory", "gatehouse-api")
                .sign(claims(&sub, now, now + 60, &["admin"]))
                .unwrap(),
        ),
        (
            "unknown kid",
            stranger
                .sign(claims(&sub, now, now + 60, &["admin"]))
                .unwrap(),
        ),
        ("alg none", alg_none),
        ("hs256 keyed with the public key", hs256_with_public_key),
        ("tampered", tampered),
        ("refresh token", refresh),
        ("gateway proof", proof),
        ("garbage", "abc.def.ghi".into()),
    ];
    for (what, token) in bad {
        let r = s.get(&token, "/api/users").await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        r.invalid_token();
    }
    read(s.client.get(s.url("/api/users")))
        .await
        .invalid_token();
    read(
        s.client
            .get(s.url("/api/users"))
            .header("authorization", "Basic YWRtaW46YWRtaW4="),
    )
    .await
    .invalid_token();
}

#[actix_web::test]
async fn jwks_publishes_the_verifying_keys() {
    let s = spawn_stack().await;
    let r = read(s.client.get(s.url("/.well-known/jwks.json"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let key = &r.body["keys"][0];
    assert_eq!(key["kid"].as_str(), header.kid.as_deref());
    assert_eq!(
        (
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("OKP"), Some("EdDSA"), Some("sig"))
    );
    // The published key verifies the token (what a third party would do).
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["gatehouse-api"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).is_ok());
}

#[actix_web::test]
async fn key_rotation_keeps_issued_tokens_valid() {
    let s = spawn_stack().await;
    let (old_token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    s.gw_handle.stop(true).await;
    // Rotate: a new active key; the generated one stays as verify-only.
    let dir = s.env.data_dir().join("keys");
    common::keys::ensure_ed25519(&dir, "next").unwrap();
    let rotated = move |l: common::config::Loader| {
        l.set(
            "tokens.keys",
            vec![
                KeyConfig { alg: KeyAlg::EdDSA, kid: None, private_key_file: Some(dir.join("next.key.pem")), public_key_file: None, secret_file: None, active: true },
                KeyConfig { alg: KeyAlg::EdDSA, kid: None, private_key_file: None, public_key_file: Some(dir.join("access-token.pub.pem")), secret_file: None, active: false },
            ]
            .into_iter()
            .map(|k| json!({"alg": "EdDSA", "active": k.active, "private_key_file": k.private_key_file, "public_key_file": k.public_key_file}))
            .collect::<Vec<_>>(),
        )
    };
    let (gw2, _h) = s.another_gateway(&rotated).await;
    let r = read(
        s.client
            .get(format!("{gw2}/api/me"))
            .bearer_auth(&old_token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let login = read(
        s.client
            .post(format!("{gw2}/api/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
    )
    .await;
    let new_token = login.body["access_token"].as_str().unwrap();
    assert_ne!(
        jsonwebtoken::decode_header(new_token).unwrap().kid,
        jsonwebtoken::decode_header(&old_token).unwrap().kid
    );
    let jwks = read(s.client.get(format!("{gw2}/.well-known/jwks.json"))).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);
}

/// Rotation by reload: a new active key and a new route take effect without a
/// restart; tokens of the old key stay valid; an invalid configuration is
/// refused with the reason while the running one keeps serving.
#[actix_web::test]
async fn reload_rotates_keys_and_refuses_bad_config() {
    let s = spawn_stack().await;
    let (admin, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let (user, _) = s.tokens("alice", "alice-password-1").await;
    let reload = |t: &str| {
        read(
            s.client
                .post(s.url("/admin/reload"))
                .bearer_auth(t.to_owned()),
        )
    };
    read(s.client.post(s.url("/admin/reload")))
        .await
        .invalid_token();
    reload(&user).await.problem(403);
    let _ = alice;

    let dir = s.env.data_dir().join("keys");
    common::keys::ensure_ed25519(&dir, "next").unwrap();
    s.overrides.lock().unwrap().extend([
        (
            "tokens.keys".to_owned(),
            json!([
                {"alg": "EdDSA", "active": true, "private_key_file": dir.join("next.key.pem")},
                {"alg": "EdDSA", "public_key_file": dir.join("access-token.pub.pem")},
            ]),
        ),
        (
            "routes".to_owned(),
            json!([
                {"prefix": "/api/me", "upstream": "users", "rewrite": "/me", "access": "authenticated"},
                {"prefix": "/api/fresh", "upstream": "echo", "access": "authenticated"},
            ]),
        ),
    ]);
    s.get(&admin, "/api/fresh").await.problem(404);
    let r = reload(&admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["routes"], 2);
    assert_eq!(
        s.get(&admin, "/api/me").await.status,
        200,
        "a token of the previous key stays valid"
    );
    assert_eq!(
        s.get(&user, "/api/fresh").await.status,
        200,
        "the new route serves at once"
    );
    s.get(&admin, "/api/users").await.problem(404);
    let (fresh, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        r.body["active_kid"].as_str()
    );
    assert_ne!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid,
        jsonwebtoken::decode_header(&admin).unwrap().kid
    );
    let jwks = read(s.client.get(s.url("/.well-known/jwks.json"))).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);

    // An invalid configuration: refused with the reason; the running one stays.
    s.overrides.lock().unwrap().push((
        "routes".to_owned(),
        json!([{"prefix": "/api/x", "upstream": "nowhere", "access": "public"}]),
    ));
    let r = reload(&fresh).await;
    assert!(
        r.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("unknown upstream"),
        "{}",
        r.text
    );
    assert_eq!(s.get(&fresh, "/api/fresh").await.status, 200);
    s.overrides.lock().unwrap().push((
        "tokens.keys".to_owned(),
        json!([{"alg": "EdDSA", "active": true, "private_key_file": "/nonexistent.pem"}]),
    ));
    s.overrides
        .lock()
        .unwrap()
        .retain(|(k, v)| !(k == "routes" && v.to_string().contains("nowhere")));
    let r = reload(&fresh).await;
    assert!(
        r.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("nonexistent"),
        "{}",
        r.text
    );
    assert_eq!(
        s.get(&fresh, "/api/me").await.status,
        200,
        "keys unchanged after a refused reload"
    );
}

/// Random bodies at the login endpoint and random tokens at a route: never a
/// 500 (asserted in `read`), always a 4xx.
#[actix_web::test]
async fn random_input_never_breaks_anything() {
    use rand::{Rng, RngCore};
    let s = spawn_stack_with(|l| {
        l.set("login_limits.per_ip.max_failures", 100_000)
            .set("login_limits.per_username.max_failures", 100_000)
    })
    .await;
    let mut rng = rand::rng();
    for i in 0..150 {
        let mut bytes = vec![0u8; rng.random_range(0..200)];
        rng.fill_bytes(&mut bytes);
        let body: Vec<u8> = if i % 3 == 0 {
            format!(
                "{{\"username\": \"{}\", \"password\": \"{}\"}}",
                URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2]),
                URL_SAFE_NO_PAD.encode(&bytes)
            )
            .into_bytes()
        } else {
            bytes.clone()
        };
        let r = read(
            s.client
                .post(s.url("/api/login"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert!(r.status.is_client_error(), "{}: {}", r.status, r.text);
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 3]),
            i
        );
        let r = s.get(&token, "/api/users").await;
        assert_eq!(r.status, 401);
    }
}

#[actix_web::test]
async fn scoped_routes_need_the_scopes_and_say_which_per_rfc_6750() {
    let s = spawn_stack_with(|l| {
        l.set(
            "routes",
            base_routes(
                json!([{"prefix": "/api/stock", "upstream": "echo", "access": {
                    "GET": {"scopes": ["stock:read"]},
                    "POST": {"scopes": ["stock:read", "stock:write"], "roles": ["admin"]},
                }}]),
            ),
        )
    })
    .await;
    let k = keys(&s, "gatehouse", "gatehouse-api");
    let now = chrono::Utc::now().timestamp();
    let token = |scope: Option<&str>, roles: &[&str]| {
        let mut c = claims(&uuid::Uuid::new_v4().to_string(), now, now + 300, roles);
        c.scope = scope.map(str::to_owned);
        k.sign(c).unwrap()
    };
    let get = |t: String| read(s.client.get(s.url("/api/stock/1")).bearer_auth(t));
    let post = |t: String| {
        read(
            s.client
                .post(s.url("/api/stock"))
                .bearer_auth(t)
                .json(&json!({})),
        )
    };
    // No scope, another scope, a prefix of it: refused with the challenge.
    for t in [
        token(None, &["user"]),
        token(Some("stock:readonly other"), &["user"]),
    ] {
        let r = get(t).await;
        r.problem(403);
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("Bearer")
                && www.contains("error=\"insufficient_scope\"")
                && www.contains("scope=\"stock:read\""),
            "{www}"
        );
    }
    assert_eq!(
        get(token(Some("other stock:read"), &["user"])).await.status,
        200
    );
    // Scopes and a role, per method: both needed.
    let r = post(token(Some("stock:read"), &["admin"])).await;
    r.problem(403);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("stock:read stock:write")
    );
    post(token(Some("stock:read stock:write"), &["user"]))
        .await
        .problem(403);
    assert_eq!(
        post(token(Some("stock:write stock:read"), &["admin"]))
            .await
            .status,
        200
    );
}
