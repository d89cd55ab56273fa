//! Machine clients: registered by admins, tokens by client credentials
//! (RFC 6749 section 4.4) with errors as section 5.2 says, scopes that
//! routes demand, a principal kind the services see, secrets rotated, and
//! every narrowing of a client revoking its tokens at once on every replica.
//! Introspection (RFC 7662) and the discovery documents too.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A registered client: principal id, client_id, first secret.
pub struct Registered {
    pub id: String,
    pub client_id: String,
    pub secret: String,
}

pub async fn register(s: &Stack, admin: &str, scopes: &[&str], roles: &[&str]) -> Registered {
    register_with(
        s,
        admin,
        json!({"name": "billing", "scopes": scopes, "roles": roles}),
    )
    .await
}

/// Register the client `body` describes.
pub async fn register_with(s: &Stack, admin: &str, body: Value) -> Registered {
    let r = s.send(admin, Method::POST, "/api/clients", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    Registered {
        id: r.body["id"].as_str().unwrap().into(),
        client_id: r.body["client_id"].as_str().unwrap().into(),
        secret: r.body["client_secret"].as_str().unwrap().into(),
    }
}

/// `POST /api/oauth/token` at `gw` with HTTP Basic and `pairs`.
pub async fn token_at(
    gw: &str,
    c: &reqwest::Client,
    id: &str,
    secret: &str,
    pairs: &[(&str, &str)],
) -> Resp {
    read(
        c.post(format!("{gw}/api/oauth/token"))
            .header("authorization", basic(id, secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs)),
    )
    .await
}

async fn token(s: &Stack, c: &Registered, scope: Option<&str>) -> Resp {
    let mut pairs = vec![("grant_type", "client_credentials")];
    if let Some(sc) = scope {
        pairs.push(("scope", sc));
    }
    token_at(&s.gw, &s.client, &c.client_id, &c.secret, &pairs).await
}

async fn access(s: &Stack, c: &Registered, scope: Option<&str>) -> String {
    let r = token(s, c, scope).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"].as_str().unwrap().into()
}

/// An OAuth error body as RFC 6749 section 5.2 has it.
fn oauth_error(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body["error"], error, "{}", r.text);
    assert!(r.body["error_description"].is_string(), "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    if status == 401 {
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "{:?}",
            r.headers
        );
    }
}

pub fn stock_routes() -> Value {
    base_routes(
        json!([{"prefix": "/api/stock", "upstream": "echo", "access": {
            "GET": {"scopes": ["stock:read"]},
            "POST": {"scopes": ["stock:write"]},
        }}]),
    )
}

#[actix_web::test]
async fn a_client_gets_a_scoped_token_and_services_see_a_machine_caller() {
    let s = spawn_stack_with(|l| l.set("routes", stock_routes())).await;
    let admin = admin_token(&s).await;
    let c = register(&s, &admin, &["stock:read", "stock:write"], &["service"]).await;
    assert!(
        c.client_id.starts_with("gh_") && c.secret.len() >= 40,
        "{}",
        c.secret
    );
    // The secret is shown once: never in a listing.
    let list = s.get(&admin, "/api/clients").await;
    assert_eq!(list.status, 200);
    assert!(!list.text.contains(&c.secret), "{}", list.text);
    // Beside the API documentation's client, which ships registered.
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["client_id"] == c.client_id.as_str())
        .unwrap();
    assert_eq!(listed["scopes"], json!(["stock:read", "stock:write"]));
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 1);

    let r = token(&s, &c, Some("stock:read")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 300);
    assert_eq!(r.body["scope"], "stock:read");
    assert!(r.body.get("refresh_token").is_none(), "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    let t = r.body["access_token"].as_str().unwrap().to_owned();

    // Services see the client as the principal, of kind `client`.
    let seen = s.get(&t, "/api/stock/1").await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    let h = &seen.body["headers"];
    assert_eq!(h["request-user-id"], c.id.as_str());
    assert_eq!(h["request-user-roles"], "service");
    assert_eq!(h["request-principal-kind"], "client");
    assert!(h["x-gateway-token"].is_string());
    // The granted scope is all it has.
    let w = s.send(&t, Method::POST, "/api/stock", json!({})).await;
    w.problem(403);
    assert!(
        w.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"stock:write\"")
    );

    // client_secret_post, no scope asked: every allowed scope.
    let r = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &c.client_id),
                ("client_secret", &c.secret),
            ])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["scope"], "stock:read stock:write");
    let both = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.send(&both, Method::POST, "/api/stock", json!({}))
            .await
            .status,
        200
    );

    // A user cannot pass for a client: the kind header is stripped.
    let (user, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let r = read(
        s.client
            .get(s.url("/api/echo/x"))
            .bearer_auth(&user)
            .header("request-principal-kind", "client"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["headers"].get("request-principal-kind").is_none(),
        "{}",
        r.text
    );

    // The audit trail records the issuance.
    audit_until(&s, &admin, "?event=oauth.token", |items| {
        items
            .iter()
            .any(|e| e["subject"] == c.client_id.as_str() && e["result"] == "success")
    })
    .await;
}

#[actix_web::test]
async fn token_endpoint_errors_are_exactly_rfc_6749_section_5_2() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let c = register(&s, &admin, &["stock:read"], &[]).await;
    let cc = [("grant_type", "client_credentials")];
    oauth_error(
        &token_at(&s.gw, &s.client, &c.client_id, "wrong", &cc).await,
        401,
        "invalid_client",
    );
    oauth_error(
        &token_at(&s.gw, &s.client, "gh_nobody", &c.secret, &cc).await,
        401,
        "invalid_client",
    );
    oauth_error(
        &token_at(
            &s.gw,
            &s.client,
            &c.client_id,
            &c.secret,
            &[("grant_type", "password")],
        )
        .await,
        400,
        "unsupported_grant_type",
    );
    oauth_error(
        &token_at(&s.gw, &s.client, &c.client_id, &c.secret, &[]).await,
        400,
        "invalid_request",
    );
    oauth_error(
        &token_at(
            &s.gw,
            &s.client,
            &c.client_id,
            &c.secret,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "stock:write"),
            ],
        )
        .await,
        400,
        "invalid_scope",
    );
    oauth_error(
        &token_at(
            &s.gw,
            &s.client,
            &c.client_id,
            &c.secret,
            &[("grant_type", "client_credentials"), ("scope", "a\\b")],
        )
        .await,
        400,
        "invalid_scope",
    );
    oauth_error(
        &token_at(
            &s.gw,
            &s.client,
            &c.client_id,
            &c.secret,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await,
        400,
        "invalid_request",
    );
    // Two authentication methods at once.
    oauth_error(
        &token_at(
            &s.gw,
            &s.client,
            &c.client_id,
            &c.secret,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &c.secret),
            ],
        )
        .await,
        400,
        "invalid_request",
    );
    // No authentication; JSON instead of a form.
    let none = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials"),
    )
    .await;
    oauth_error(&none, 401, "invalid_client");
    let as_json = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .header("authorization", basic(&c.client_id, &c.secret))
            .json(&json!({"grant_type": "client_credentials"})),
    )
    .await;
    oauth_error(&as_json, 400, "invalid_request");
    // A user's bearer token is no client authentication.
    let (user, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let bearer = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .bearer_auth(user)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials"),
    )
    .await;
    oauth_error(&bearer, 401, "invalid_client");
    // Only POST.
    let get = read(s.client.get(s.url("/api/oauth/token"))).await;
    assert_eq!(get.status, 405, "{}", get.text);
}

#[actix_web::test]
async fn failed_client_authentications_lock_out_like_logins() {
    let s = spawn_stack_with(|l| l.set("trusted_proxies", json!(["127.0.0.1/32"]))).await;
    let admin = admin_token(&s).await;
    let c = register(&s, &admin, &[], &[]).await;
    let cc = [("grant_type", "client_credentials")];
    // Twenty wrong secrets at once: at most five are checked.
    let all = futures_util::future::join_all(
        (0..20).map(|_| token_at(&s.gw, &s.client, &c.client_id, "wrong-secret", &cc)),
    )
    .await;
    let checked = all.iter().filter(|r| r.status == 401).count();
    let refused: Vec<&Resp> = all.iter().filter(|r| r.status == 429).collect();
    assert_eq!((checked, refused.len()), (5, 15));
    for r in refused {
        assert_eq!(r.body["error"], "invalid_client", "{}", r.text);
        assert!(r.headers.contains_key("retry-after"));
    }
    // The right secret waits for the lockout to end as well, from there;
    // from where the client really runs it is let in (the lockout is per
    // client and address, so knowing a client_id locks nobody out).
    let r = token_at(&s.gw, &s.client, &c.client_id, &c.secret, &cc).await;
    assert_eq!(r.status, 429, "{}", r.text);
    let elsewhere = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .header("authorization", basic(&c.client_id, &c.secret))
            .header("x-forwarded-for", "192.0.2.7")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&cc)),
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text);
    audit_until(&s, &admin, "?event=oauth.client.locked", |items| {
        !items.is_empty()
    })
    .await;
}

#[actix_web::test]
async fn rotation_and_every_narrowing_revoke_tokens_at_once_on_every_replica() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    let s = spawn_stack_with({
        let shared = shared.clone();
        move |l| shared(l).set("routes", stock_routes())
    })
    .await;
    let (b, _handle) = s
        .another_gateway(&{
            let shared = shared.clone();
            move |l| shared(l).set("routes", stock_routes())
        })
        .await;
    let admin = admin_token(&s).await;
    let mut c = register(&s, &admin, &["stock:read"], &[]).await;
    let works_everywhere = |t: String, expect: u16| {
        let (client, a, b) = (s.client.clone(), s.gw.clone(), b.clone());
        async move {
            for gw in [a, b] {
                let r = read(client.get(format!("{gw}/api/stock/1")).bearer_auth(&t)).await;
                assert_eq!(r.status.as_u16(), expect, "{gw}: {}", r.text);
            }
        }
    };
    let first = s.get(&admin, &format!("/api/clients/{}", c.id)).await.body["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_token = access(&s, &c, None).await;

    // A second secret; a third is refused.
    let path = format!("/api/clients/{}/secrets", c.id);
    let r = s.send(&admin, Method::POST, &path, json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let next = r.body["client_secret"].as_str().unwrap().to_owned();
    s.send(&admin, Method::POST, &path, json!({}))
        .await
        .problem(409);
    let old_secret = std::mem::replace(&mut c.secret, next);
    let new_token = access(&s, &c, None).await;
    works_everywhere(old_token.clone(), 200).await;

    // Removing the old secret revokes what it obtained, and only that.
    let r = read(
        s.client
            .delete(s.url(&format!("{path}/{first}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    works_everywhere(old_token, 401).await;
    works_everywhere(new_token.clone(), 200).await;
    let cc = [("grant_type", "client_credentials")];
    oauth_error(
        &token_at(&s.gw, &s.client, &c.client_id, &old_secret, &cc).await,
        401,
        "invalid_client",
    );
    let last = s.get(&admin, &format!("/api/clients/{}", c.id)).await.body["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    read(
        s.client
            .delete(s.url(&format!("{path}/{last}")))
            .bearer_auth(&admin),
    )
    .await
    .problem(409);

    // Deactivation: refused at once, on both replicas; no new token.
    let me = format!("/api/clients/{}", c.id);
    let r = s
        .send(&admin, Method::PATCH, &me, json!({"active": false}))
        .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["active"]),
        (200, &json!(false)),
        "{}",
        r.text
    );
    works_everywhere(new_token, 401).await;
    oauth_error(&token(&s, &c, None).await, 401, "invalid_client");
    // Reactivated: new tokens work (the old ones stay refused).
    s.send(&admin, Method::PATCH, &me, json!({"active": true}))
        .await;
    let again = access(&s, &c, None).await;
    works_everywhere(again.clone(), 200).await;

    // Fewer scopes: what it holds is revoked too; a rename is not.
    s.send(&admin, Method::PATCH, &me, json!({"name": "renamed"}))
        .await;
    works_everywhere(again.clone(), 200).await;
    s.send(&admin, Method::PATCH, &me, json!({"scopes": []}))
        .await;
    works_everywhere(again, 401).await;
    oauth_error(
        &token(&s, &c, Some("stock:read")).await,
        400,
        "invalid_scope",
    );

    // Deleted: its tokens die with it.
    let last = access(&s, &c, None).await;
    let r = read(s.client.delete(s.url(&me)).bearer_auth(&admin)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = read(s.client.get(format!("{b}/api/echo/x")).bearer_auth(&last)).await;
    r.invalid_token();
    s.get(&admin, &me).await.problem(404);
}

#[actix_web::test]
async fn the_client_registry_is_for_admins_and_checks_what_it_is_given() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    read(s.client.get(s.url("/api/clients")))
        .await
        .invalid_token();
    s.create_user(&admin, "bob", &["user"]).await;
    let (bob, _) = s.tokens("bob", "bob-password-1").await;
    s.send(&bob, Method::POST, "/api/clients", json!({"name": "x"}))
        .await
        .problem(403);
    let bad = s
        .send(
            &admin,
            Method::POST,
            "/api/clients",
            json!({"name": "", "scopes": ["a b"], "roles": ["not a role"]}),
        )
        .await;
    let fields: Vec<&str> = bad.problem(422)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "scopes", "roles"]);
    s.send(
        &admin,
        Method::POST,
        "/api/clients",
        json!({"name": "x", "secret": "mine"}),
    )
    .await
    .problem(422);
    s.get(&admin, "/api/clients/not-a-uuid").await.problem(404);
    s.get(&admin, &format!("/api/clients/{}", uuid::Uuid::new_v4()))
        .await
        .problem(404);
    s.send(
        &admin,
        Method::PATCH,
        &format!("/api/clients/{}", uuid::Uuid::new_v4()),
        json!({"active": false}),
    )
    .await
    .problem(404);
    // A machine client with the admin role may administer (automation);
    // its actions are audited under its id.
    let robot = register(&s, &admin, &[], &["admin"]).await;
    let t = access(&s, &robot, None).await;
    assert_eq!(s.get(&t, "/api/clients").await.status, 200);
    audit_until(&s, &admin, "?event=admin.client.created", |items| {
        items
            .iter()
            .any(|e| e["subject"] == robot.client_id.as_str())
    })
    .await;
}

async fn introspect(s: &Stack, c: &Registered, token: &str) -> Resp {
    read(
        s.client
            .post(s.url("/api/oauth/introspect"))
            .header("authorization", basic(&c.client_id, &c.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ])),
    )
    .await
}

#[actix_web::test]
async fn introspection_knows_revocations_and_needs_a_client() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (user, refresh) = s.tokens("admin", ADMIN_PASSWORD).await;
    // A client no admin allowed to introspect learns nothing of a token.
    let other = register(&s, &admin, &[], &[]).await;
    let r = introspect(&s, &other, &user).await;
    oauth_error(&r, 403, "unauthorized_client");
    assert!(r.body.get("username").is_none(), "{}", r.text);
    // One allowed another audience's tokens sees this one as inactive.
    let elsewhere = register_with(
        &s,
        &admin,
        json!({"name": "reports", "introspect": ["reports-api"]}),
    )
    .await;
    assert_eq!(
        introspect(&s, &elsewhere, &user).await.body,
        json!({"active": false})
    );
    let rs = register_with(
        &s,
        &admin,
        json!({"name": "stock", "scopes": ["stock:read"], "roles": ["service"], "introspect": ["gatehouse-api"]}),
    )
    .await;
    let r = introspect(&s, &rs, &user).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["username"], "admin");
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body.get("client_id").is_none(), "{}", r.text);
    // A client's token names its client.
    let mine = access(&s, &rs, None).await;
    let r = introspect(&s, &rs, &mine).await;
    assert_eq!(
        (&r.body["client_id"], &r.body["scope"]),
        (&json!(rs.client_id), &json!("stock:read"))
    );
    assert_eq!(r.body["sub"], rs.id.as_str());
    // After a logout: inactive, and nothing more said.
    let out = read(
        s.client
            .post(s.url("/api/logout"))
            .bearer_auth(&user)
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(out.status, 204);
    let r = introspect(&s, &rs, &user).await;
    assert_eq!(r.body, json!({"active": false}));
    assert_eq!(
        introspect(&s, &rs, "not.a.token").await.body,
        json!({"active": false})
    );
    // Resource servers authenticate; a token is required.
    let anon = read(
        s.client
            .post(s.url("/api/oauth/introspect"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", &mine)])),
    )
    .await;
    oauth_error(&anon, 401, "invalid_client");
    let empty = read(
        s.client
            .post(s.url("/api/oauth/introspect"))
            .header("authorization", basic(&rs.client_id, &rs.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(""),
    )
    .await;
    oauth_error(&empty, 400, "invalid_request");
}

#[actix_web::test]
async fn discovery_documents_name_the_endpoints_keys_and_scopes() {
    let s = spawn_stack_with(|l| {
        l.set("routes", stock_routes())
            .set("tokens.public_url", "https://gw.example/")
    })
    .await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = read(s.client.get(s.url(path))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let m = &r.body;
        assert_eq!(m["issuer"], "gatehouse");
        assert_eq!(m["jwks_uri"], "https://gw.example/.well-known/jwks.json");
        assert_eq!(m["token_endpoint"], "https://gw.example/api/oauth/token");
        assert_eq!(
            m["introspection_endpoint"],
            "https://gw.example/api/oauth/introspect"
        );
        assert_eq!(
            m["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(
            m["scopes_supported"],
            json!([
                "openid",
                "profile",
                "email",
                "offline_access",
                "stock:read",
                "stock:write"
            ])
        );
        if path.ends_with("openid-configuration") {
            assert_eq!(m["subject_types_supported"], json!(["public"]));
            assert_eq!(m["id_token_signing_alg_values_supported"], json!(["EdDSA"]));
        }
    }
}
