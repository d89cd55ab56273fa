//! Gatehouse as an issuer other parties can trust, checked with Authlib and
//! joserfc (Python, written by nobody here): discovery (RFC 8414 and OIDC),
//! a client-credentials token by both authentication methods, the token
//! verified against the published keys, and introspection (RFC 7662)
//! before and after the client is revoked.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Method;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};

use crate::clients::{register_with, stock_routes};
use crate::helpers::*;

fn python() -> PathBuf {
    testkit::python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "oauth-venv",
        &["authlib==1.9.10", "joserfc==1.8.0", "requests==2.34.2"],
    )
    .join("python")
}

async fn authlib(args: Vec<String>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/authlib_client.py");
    let out = actix_web::rt::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "authlib: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A stack whose issuer is its own URL, signing with an RS256 key (OIDC
/// discovery wants RS256 among the algorithms): the stack, its URL, and
/// the key's folder (held while the stack runs).
async fn rs256_stack() -> (Stack, String, tempfile::TempDir) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let keys = tempfile::tempdir().unwrap();
    let pem = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048)
        .unwrap()
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    let key_file = keys.path().join("rs256.pem");
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let s = spawn_stack_on(listener, {
        let base = base.clone();
        move |l| {
            l.set("routes", stock_routes())
                .set("tokens.issuer", &base)
                .set("tokens.public_url", &base)
                .set(
                    "tokens.keys",
                    json!([{"alg": "RS256", "private_key_file": key_file, "active": true}]),
                )
        }
    })
    .await;
    (s, base, keys)
}

#[actix_web::test]
async fn authlib_discovers_gets_verifies_and_introspects_tokens_and_sees_revocation() {
    let (s, base, _keys) = rs256_stack().await;
    let admin = admin_token(&s).await;
    let caller = register_with(
        &s,
        &admin,
        json!({"name": "caller", "scopes": ["stock:read", "stock:write"], "roles": ["service"],
               "introspect": ["gatehouse-api"]}),
    )
    .await;
    let resource_server = register_with(
        &s,
        &admin,
        json!({"name": "stock", "introspect": ["gatehouse-api"]}),
    )
    .await;

    let out = authlib(vec![
        base.clone(),
        caller.client_id.clone(),
        caller.secret.clone(),
    ])
    .await;
    assert_eq!(out["call_status"], 200, "{out}");
    assert_eq!(out["principal_kind"], "client");
    assert_eq!(out["expires_in"], 300);
    assert_eq!(out["post_scope"], "stock:read stock:write");
    assert_eq!(out["wrong_secret_error"], "invalid_client");
    assert_eq!(
        (&out["typ"], &out["alg"]),
        (&json!("at+jwt"), &json!("RS256"))
    );
    let seen = &out["introspection"];
    assert_eq!(seen["active"], true, "{out}");
    assert_eq!(seen["client_id"], caller.client_id.as_str());
    assert_eq!(seen["scope"], "stock:read");
    assert_eq!(seen["iss"], base.as_str());

    // The caller is deactivated: another resource server, asking now, hears
    // that the token is no longer active.
    let token = out["access_token"].as_str().unwrap().to_owned();
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/clients/{}", caller.id),
            json!({"active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = authlib(vec![
        base,
        resource_server.client_id.clone(),
        resource_server.secret.clone(),
        "--introspect".into(),
        token,
    ])
    .await;
    assert_eq!(after, json!({"active": false}));
}

/// Authlib runs the code flow as a confidential client: PKCE, the login
/// page (walked with requests), the exchange with client_secret_basic, the
/// ID token checked by its `CodeIDToken` (iss, aud, nonce, at_hash, exp),
/// userinfo and a refresh.
#[actix_web::test]
async fn authlib_runs_the_code_flow_as_a_confidential_client() {
    let (s, base, _keys) = rs256_stack().await;
    let admin = admin_token(&s).await;
    let app = register_with(
        &s,
        &admin,
        json!({"name": "confidential app", "first_party": true,
               "redirect_uris": [crate::oidc::CALLBACK]}),
    )
    .await;
    let out = authlib(vec![
        base,
        app.client_id.clone(),
        app.secret.clone(),
        "--code-flow".into(),
        "admin".into(),
        ADMIN_PASSWORD.into(),
        crate::oidc::CALLBACK.into(),
    ])
    .await;
    assert_eq!(out["preferred_username"], "admin", "{out}");
    assert!(out["at_hash"].is_string(), "{out}");
    assert_eq!(out["userinfo"]["sub"], out["sub"]);
    assert_eq!(out["refreshed"], true);
    assert_eq!(out["iss_param"], true);
}
