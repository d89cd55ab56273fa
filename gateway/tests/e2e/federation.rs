//! Trusted identity providers, against a real one: oidc-provider from the
//! npm registry (testkit/node/provider.mjs), issuing JWT access tokens by
//! client credentials. Its users become linked accounts with mapped roles;
//! its key rotation is picked up with no restart; with it stopped, cached
//! keys keep working and a new kid is a clear 401; tokens from an untrusted
//! issuer, for another audience, with a disallowed algorithm or naming a
//! `jku` are refused; a thousand concurrent requests with an unknown kid
//! make one key fetch; deactivating a linked account refuses it at once.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use testkit::idp::Provider;

use crate::helpers::*;

fn provider() -> Provider {
    Provider::start(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

fn trusted(p: &Provider, cooldown_secs: u64) -> Value {
    p.trusted(cooldown_secs)
}

const COOLDOWN_SECS: u64 = 4;

/// Wait out the unknown-kid cooldown, so the next unknown kid may refetch.
async fn past_cooldown() {
    actix_web::rt::time::sleep(std::time::Duration::from_millis(COOLDOWN_SECS * 1000 + 100)).await;
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// `header` and `claims` signed RS256 with a key nobody trusts.
fn forged(header: Value, claims: Value) -> String {
    let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    h.jku = header["jku"].as_str().map(str::to_owned);
    h.typ = Some("at+jwt".into());
    jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims_for(p: &Provider) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": p.issuer, "aud": "gatehouse", "sub": "mallory", "exp": now + 300, "iat": now})
}

#[actix_web::test]
async fn a_provider_user_is_a_linked_account_with_mapped_roles_and_can_be_deactivated() {
    let p = provider();
    let issuers = trusted(&p, 30);
    let s = spawn_stack_with(move |l| l.set("trusted_issuers", issuers.clone())).await;
    let alice = p.token("alice", &[("scope", "orders:read")]).await;
    // The echo upstream sees a linked local account, not the provider's id.
    let r = s.get(&alice, "/api/echo").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["headers"]["request-user-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(r.body["headers"]["request-user-roles"], "user");
    assert!(r.body["headers"].get("request-principal-kind").is_none());
    assert!(r.body["headers"].get("authorization").is_none());
    // The same account on the next token.
    let again = p.token("alice", &[]).await;
    assert_ne!(again, alice);
    let r = s.get(&again, "/api/echo").await;
    assert_eq!(r.body["headers"]["request-user-id"], id.as_str());
    // Not an admin: the provider did not say so.
    s.get(&alice, "/api/users").await.problem(403);

    // Linked accounts' names are theirs only: no local account takes one.
    let admin = admin_token(&s).await;
    let r = s
        .send(
            &admin,
            Method::POST,
            "/api/users",
            json!({"username": "fed.bob", "email": "bob@example.com", "password": "bob-password-1"}),
        )
        .await;
    r.problem(422);
    assert_eq!(
        r.body["errors"],
        json!([{"field": "username", "code": "reserved", "message": r.body["errors"][0]["message"]}])
    );
    // bob's realm role maps to admin: he administers, and sees alice as a
    // linked account (issuer and subject), with no password.
    let bob = p.token("bob", &[]).await;
    let list = s.get(&bob, "/api/users?username=fed").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let items = list.body["items"].as_array().unwrap();
    let a = items.iter().find(|u| u["id"] == id.as_str()).unwrap();
    assert_eq!(a["username"], "fed.alice");
    assert_eq!(a["email"], "alice@idp.test");
    assert_eq!(
        a["linked_identity"],
        json!({"issuer": p.issuer, "subject": "alice"})
    );
    let b = items.iter().find(|u| u["username"] == "fed.bob").unwrap();
    assert_eq!(b["roles"], json!(["admin", "user"]));
    assert_eq!(b["linked_identity"]["subject"], "bob");
    // No password: the linked account cannot log in locally.
    let r = s.login("fed.alice", "anything-at-all").await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Deactivated by an admin: refused at once, with the token cached.
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{id}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.get(&again, "/api/echo").await.invalid_token();
    // And a fresh token from the provider is refused too.
    let fresh = p.token("alice", &[]).await;
    let r = s.get(&fresh, "/api/echo").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("deactivated"), "{}", r.text);
    // Reactivated: new tokens work again.
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{id}"),
            json!({"is_active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newest = p.token("alice", &[]).await;
    assert_eq!(s.get(&newest, "/api/echo").await.status, 200);
}

/// A trusted issuer of the test's own: its key set served here, so a test
/// signs tokens with any claims (oidc-provider decides its own).
struct OwnIssuer {
    issuer: String,
    jwks_uri: String,
    key: jsonwebtoken::EncodingKey,
    handle: actix_web::dev::ServerHandle,
}

impl OwnIssuer {
    const KID: &'static str = "own-1";

    async fn start() -> OwnIssuer {
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048).unwrap();
        let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
        let jwks = json!({"keys": [{"kty": "RSA", "kid": Self::KID, "alg": "RS256", "use": "sig",
            "n": b64(key.n()), "e": b64(key.e())}]});
        let server = actix_web::HttpServer::new(move || {
            let jwks = jwks.clone();
            actix_web::App::new().route(
                "/jwks",
                actix_web::web::get().to(move || {
                    let jwks = jwks.clone();
                    async move { actix_web::HttpResponse::Ok().json(jwks) }
                }),
            )
        })
        .workers(1)
        .listen(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        OwnIssuer {
            issuer: "https://own-idp.test".into(),
            jwks_uri: format!("http://127.0.0.1:{port}/jwks"),
            key: jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            handle,
        }
    }

    fn trusted(&self) -> Value {
        json!([{"issuer": self.issuer, "jwks_uri": self.jwks_uri, "audiences": ["gatehouse"],
            "algorithms": ["RS256"]}])
    }

    /// A token with these claims besides `iss`, `aud`, `exp` and `iat`.
    fn token(&self, claims: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut all = json!({"iss": self.issuer, "aud": "gatehouse", "exp": now + 300, "iat": now});
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(Self::KID.into());
        jsonwebtoken::encode(&h, &all, &self.key).unwrap()
    }
}

/// A provider's user never takes a name a local account could want: its
/// account is `fed.` and the name it asks for (#30: it got the bare name,
/// and the admin could then not create `support`).
#[actix_web::test]
async fn linked_accounts_never_take_local_names() {
    let own = OwnIssuer::start().await;
    let issuers = own.trusted();
    let s = spawn_stack_with(move |l| l.set("trusted_issuers", issuers.clone())).await;
    let admin = admin_token(&s).await;
    let me = |sub: Value, name: &str| {
        let t = own.token(json!({"sub": sub, "preferred_username": name}));
        let s = &s;
        async move { s.get(&t, "/api/me").await }
    };
    for name in ["support", "root", "admin-2"] {
        let r = me(json!(format!("u-{name}")), name).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["username"], format!("fed.{name}"));
        s.create_user(&admin, name, &["user"]).await;
    }
    // A namesake from the same provider: a suffix.
    let r = me(json!("u-other"), "Support").await;
    assert_eq!(r.body["username"], "fed.support-2", "{}", r.text);
    own.handle.stop(false).await;
}

/// `sub` is a string (RFC 7519, OpenID Connect): a provider's token whose
/// `sub` is a number (#30: read as its digits) or anything else is invalid,
/// and makes no account.
#[actix_web::test]
async fn a_provider_token_whose_sub_is_not_a_string_is_invalid() {
    let own = OwnIssuer::start().await;
    let issuers = own.trusted();
    let s = spawn_stack_with(move |l| l.set("trusted_issuers", issuers.clone())).await;
    let admin = admin_token(&s).await;
    let before = s.get(&admin, "/api/users?username=fed").await.body["total"].clone();
    let numeric = own.token(json!({"sub": 12345, "preferred_username": "numeric"}));
    let r = s.get(&numeric, "/api/echo").await;
    r.invalid_token();
    assert_eq!(
        s.get(&admin, "/api/users?username=fed").await.body["total"],
        before
    );
    // So is any other non-string `sub`; the same digits as a string are fine.
    for sub in [
        json!(1.5),
        json!(true),
        json!(["a"]),
        json!({"id": "a"}),
        Value::Null,
    ] {
        let t = own.token(json!({"sub": sub, "preferred_username": "odd"}));
        s.get(&t, "/api/echo").await.invalid_token();
    }
    let digits = own.token(json!({"sub": "12345", "preferred_username": "numeric"}));
    let r = s.get(&digits, "/api/me").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["linked_identity"]["subject"], "12345");
    own.handle.stop(false).await;
}

#[actix_web::test]
async fn scopes_from_the_provider_meet_scoped_routes() {
    let p = provider();
    let issuers = trusted(&p, 30);
    let s = spawn_stack_with(move |l| {
        l.set("trusted_issuers", issuers.clone()).set(
            "routes",
            base_routes(json!([{"prefix": "/api/stock", "upstream": "echo",
                "access": {"GET": {"scopes": ["orders:read"]}, "POST": {"scopes": ["orders:write"]}}}])),
        )
    })
    .await;
    let t = p.token("alice", &[("scope", "orders:read")]).await;
    assert_eq!(s.get(&t, "/api/stock").await.status, 200);
    let r = s.send(&t, Method::POST, "/api/stock", json!({})).await;
    r.problem(403);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"),
        "{:?}",
        r.headers
    );
}

#[actix_web::test]
async fn keys_rotate_without_restart_survive_the_provider_going_down_and_never_come_from_the_token()
{
    let mut p = provider();
    // A cooldown longer than the burst below takes, even on a loaded machine.
    let issuers = trusted(&p, COOLDOWN_SECS);
    let s = spawn_stack_with(move |l| l.set("trusted_issuers", issuers.clone())).await;
    let first = p.token("alice", &[]).await;
    assert_eq!(s.get(&first, "/api/echo").await.status, 200);

    // Another audience, a disallowed algorithm (PS256), an untrusted issuer.
    let other = p.token("alice", &[("resource", "urn:other")]).await;
    s.get(&other, "/api/echo").await.invalid_token();
    let ps = p.token("alice", &[("resource", "urn:ps256")]).await;
    assert_eq!(decode(ps.split('.').next().unwrap())["alg"], "PS256");
    s.get(&ps, "/api/echo").await.invalid_token();
    let stranger = provider();
    let untrusted = stranger.token("alice", &[]).await;
    s.get(&untrusted, "/api/echo").await.invalid_token();
    drop(stranger);

    // A token naming a key set of its own (`jku`): that server sees nothing.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let trap = actix_web::HttpServer::new(move || {
        let counter = counter.clone();
        actix_web::App::new().default_service(actix_web::web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { actix_web::HttpResponse::Ok().json(json!({"keys": []})) }
        }))
    })
    .workers(1)
    .listen(TcpListener::bind("127.0.0.1:0").unwrap())
    .unwrap();
    let trap_port = trap.addrs()[0].port();
    let trap = trap.run();
    let trap_handle = trap.handle();
    actix_web::rt::spawn(trap);
    let jku = forged(
        json!({"kid": "attacker", "jku": format!("http://127.0.0.1:{trap_port}/jwks")}),
        claims_for(&p),
    );
    s.get(&jku, "/api/echo").await.invalid_token();
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    trap_handle.stop(false).await;

    // Rotation: the provider signs with a new key; the gateway, not
    // restarted, fetches the set again for the kid it does not know.
    past_cooldown().await;
    let kid = p.rotate().await;
    let rotated = p.token("alice", &[]).await;
    assert_eq!(decode(rotated.split('.').next().unwrap())["kid"], kid);
    let r = s.get(&rotated, "/api/echo").await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A thousand concurrent requests with an unknown kid: one fetch.
    past_cooldown().await;
    let before = p.jwks_hits().await;
    let unknown = forged(json!({"kid": "never-published"}), claims_for(&p));
    let client = testkit::client_builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let url = s.url("/api/echo");
    let answers = futures_util::future::join_all((0..1000).map(|_| {
        client
            .get(&url)
            .header("authorization", format!("Bearer {unknown}"))
            .send()
    }))
    .await;
    for a in answers {
        assert_eq!(a.unwrap().status(), 401);
    }
    let fetched = p.jwks_hits().await - before;
    assert_eq!(
        fetched, 1,
        "key-set fetches for 1,000 requests with one unknown kid"
    );

    // A token signed before the provider stops, never seen by the gateway:
    // verified with the cached keys. A new kid: a clear 401, quickly.
    let unseen = p.token("bob", &[]).await;
    p.program.stop();
    past_cooldown().await;
    let r = s.get(&unseen, "/api/echo").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let started = std::time::Instant::now();
    let r = s
        .get(
            &forged(json!({"kid": "brand-new"}), claims_for(&p)),
            "/api/echo",
        )
        .await;
    r.invalid_token();
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be fetched"),
        "{}",
        r.text
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[actix_web::test]
async fn claims_are_forwarded_under_the_proof_and_never_taken_from_clients() {
    let p = provider();
    let issuers = trusted(&p, 30);
    let s = spawn_stack_with(move |l| {
        l.set("trusted_issuers", issuers.clone())
            .set("identity.forward_claims", json!({"email": "x-user-email"}))
            .set(
                "routes",
                base_routes(json!([{"prefix": "/api/claims", "upstream": "echo", "access": "authenticated",
                    "forward_claims": {"realm_access.roles": "x-idp-roles", "username": "x-user-name"}}])),
            )
    })
    .await;
    // The echo's view, checked as a service would check it.
    let proof_claims = |h: &Value| proof_covered(&s, "echo", h);

    let alice = p.token("alice", &[]).await;
    let spoof = |path: &str, token: &str| {
        s.client
            .get(s.url(path))
            .bearer_auth(token)
            .header("x-user-email", "ceo@corp.test")
            .header("x-idp-roles", "gatehouse-admin")
    };
    // The global claim everywhere, the route's on its route only; what the
    // client sent under those names is gone.
    let r = read(spoof("/api/claims", &alice)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.body["headers"];
    assert_eq!(h["x-user-email"], "alice@idp.test");
    assert_eq!(h["x-idp-roles"], "orders-user");
    assert_eq!(h["x-user-name"], "fed.alice");
    let covered = proof_claims(h);
    assert_eq!(covered["x-user-email"], "alice@idp.test");
    assert_eq!(covered["x-idp-roles"], "orders-user");
    let r = read(spoof("/api/echo", &alice)).await;
    let h = &r.body["headers"];
    assert_eq!(h["x-user-email"], "alice@idp.test");
    assert!(h.get("x-idp-roles").is_none(), "{h}");
    // A local token has no e-mail claim: nothing forwarded, nothing kept
    // from the client.
    let admin = admin_token(&s).await;
    let r = read(spoof("/api/claims", &admin)).await;
    let h = &r.body["headers"];
    assert!(h.get("x-user-email").is_none(), "{h}");
    assert!(h.get("x-idp-roles").is_none(), "{h}");
    assert_eq!(h["x-user-name"], "admin");
    // A public route: no identity, no claims, and still no client copies.
    let r = read(spoof("/public", &alice)).await;
    let h = &r.body["headers"];
    assert!(
        h.get("x-user-email").is_none() && h.get("x-idp-roles").is_none(),
        "{h}"
    );
}

/// Calls the gateway made to the users service so far (linking among
/// them), from its `/metrics`.
async fn users_calls(s: &Stack, gw: &str) -> u64 {
    let text = read(s.client.get(format!("{gw}/metrics"))).await.text;
    text.lines()
        .filter(|l| l.starts_with("gatehouse_upstream_target_requests_total{upstream=\"users\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The linking of a provider's user is remembered per issuer and subject
/// (#33: it was per token, so every new token cost a users call): a known
/// user's new tokens make none; a token whose mapped roles changed links
/// again and counts at once; an account an admin deactivates is refused on
/// the next new token, on this replica and on another one that had it
/// remembered.
#[actix_web::test]
async fn a_known_provider_users_new_token_makes_no_users_call() {
    let own = OwnIssuer::start().await;
    let mut issuers = own.trusted();
    issuers[0]["roles"] = json!({"claim": "groups", "map": {"staff": "admin"}});
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    let f = move |l: common::config::Loader| {
        shared(l)
            .set("trusted_issuers", issuers.clone())
            .set("revocations.resync_secs", 3600)
    };
    let s = spawn_stack_with(f.clone()).await;
    let (other, _h) = s.another_gateway(&f).await;
    let token = |groups: Value| {
        own.token(
            json!({"sub": "u-1", "preferred_username": "dana", "groups": groups,
                         "jti": uuid::Uuid::new_v4().to_string()}),
        )
    };
    let echo = |gw: &str, t: String| {
        let rb = s.client.get(format!("{gw}/api/echo")).bearer_auth(t);
        async move { read(rb).await }
    };
    let r = echo(&s.gw, token(json!([]))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["headers"]["request-user-id"].clone();
    assert_eq!(r.body["headers"]["request-user-roles"], "user");
    assert_eq!(echo(&other, token(json!([]))).await.status, 200);

    let before = users_calls(&s, &s.gw).await;
    for _ in 0..5 {
        let r = echo(&s.gw, token(json!([]))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["headers"]["request-user-id"], id);
    }
    assert_eq!(
        users_calls(&s, &s.gw).await,
        before,
        "new tokens of a known user"
    );

    // The provider made her staff: her next token links again, and says so.
    let r = echo(&s.gw, token(json!(["staff"]))).await;
    assert_eq!(
        r.body["headers"]["request-user-roles"], "admin,user",
        "{}",
        r.text
    );
    assert_eq!(users_calls(&s, &s.gw).await, before + 1);

    // Deactivated by an admin (through this replica): refused at once with
    // a new token here, and on the other replica, which remembers her.
    let admin = admin_token(&s).await;
    let path = format!("/api/users/{}", id.as_str().unwrap());
    let r = s
        .send(&admin, Method::PATCH, &path, json!({"is_active": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = echo(&s.gw, token(json!(["staff"]))).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("deactivated"), "{}", r.text);
    let r = echo(&other, token(json!([]))).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("deactivated"), "{}", r.text);
    own.handle.stop(false).await;
}
