//! Signing in on the login page through a trusted identity provider
//! (`trusted_issuers[].login`), against a real one: oidc-provider from npm
//! (testkit/node/provider.mjs) with its own sign-in page, driven as a
//! browser drives it. The account is linked as that provider's bearer
//! tokens are (one id space, mapped roles), the provider's `amr` counts for
//! the second-factor rule, and every answer is checked before anyone is
//! signed in: the browser that started it (login CSRF), one use, the
//! issuer (mix-up), the provider's refusal; a provider that is down and a
//! deactivated account are pages, never a 500.

use std::net::TcpListener;
use std::path::Path;

use serde_json::{Value, json};
use testkit::idp::Provider;

use crate::helpers::*;
use crate::oidc::{Browser, field, location, query};
use crate::web_sessions::html_get;

fn provider() -> Provider {
    Provider::start(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// A session route for users, one for users with a second factor, and
/// one for admins.
fn routes() -> Value {
    base_routes(json!([
        {"prefix": "/app", "upstream": "echo", "access": {"roles": ["user"], "session": true}},
        {"prefix": "/secure", "upstream": "echo", "access": {"roles": ["user"], "mfa": true, "session": true}},
        {"prefix": "/staff", "upstream": "echo", "access": {"roles": ["admin"], "mfa": true, "session": true}},
    ]))
}

/// A stack whose login page offers `providers` (display names), each a
/// running oidc-provider, and one more, "Down", whose provider is not
/// running; the gateway's public URL is its own address.
async fn stack_with(providers: &[(&Provider, &str)]) -> Stack {
    replicated(providers).await.0
}

/// [`stack_with`], and its gateway's configuration (for another replica).
async fn replicated(
    providers: &[(&Provider, &str)],
) -> (
    Stack,
    impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap().keep();
    let mut entries = Vec::new();
    for (i, (p, name)) in providers.iter().enumerate() {
        let secret = dir.join(format!("secret-{i}"));
        entries.push(p.sign_in_option(&gw, name, &secret).await);
    }
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    std::fs::write(dir.join("secret-down"), "s").unwrap();
    entries.push(json!({
        "issuer": down, "discovery": true, "audiences": ["gatehouse"],
        "keys": {"fetch_timeout_ms": 500},
        "login": {"client_id": "gatehouse", "client_secret_file": dir.join("secret-down"),
                  "display_name": "Down"},
    }));
    let public = gw.clone();
    let f = move |l: common::config::Loader| {
        l.set("routes", routes())
            .set("trusted_issuers", Value::Array(entries.clone()))
            .set("tokens.public_url", public.clone())
    };
    (spawn_stack_on(listener, f.clone()).await, f)
}

/// The provider's URL for a `Location` it answered with.
fn at(p: &Provider, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{}{location}", p.issuer)
    }
}

/// Press "Sign in with `name`" on the login page (coming back to
/// `return_to`): the redirect to the provider.
async fn press(b: &mut Browser, name: &str, return_to: &str) -> String {
    let page = b.get(&format!("/login?return_to={return_to}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains(&format!("Sign in with {name}")),
        "{}",
        page.text
    );
    let csrf = field(&page.text, "csrf");
    let issuer = button_issuer(&page.text, name);
    let r = b
        .post(
            "/login/provider",
            &[
                ("csrf", &csrf),
                ("provider", &issuer),
                ("return_to", return_to),
            ],
        )
        .await;
    location(&r)
}

/// The `provider` field of the form whose button names `name`.
fn button_issuer(html: &str, name: &str) -> String {
    let button = html.find(&format!("Sign in with {name}")).unwrap();
    let form = html[..button].rfind("<form").unwrap();
    field(&html[form..button], "provider")
}

/// Through the provider's own sign-in page as `who` (unless the browser
/// is signed in there already): the callback URL it sends the browser
/// back to.
async fn at_provider(b: &mut Browser, p: &Provider, authorize: &str, who: &str) -> String {
    let r = b.get(authorize).await;
    let interaction = at(p, &location(&r));
    if !interaction.starts_with(&format!("{}/interaction/", p.issuer)) {
        return interaction;
    }
    let form = b.get(&interaction).await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(form.text.contains("Test provider"), "{}", form.text);
    let password = format!("{who}-password");
    let r = b
        .post(&interaction, &[("login", who), ("password", &password)])
        .await;
    let r = b.get(&at(p, &location(&r))).await;
    location(&r)
}

#[actix_web::test]
async fn a_provider_sign_in_links_the_account_and_starts_a_session() {
    let (acme, globex) = (provider(), provider());
    let s = stack_with(&[(&acme, "Acme SSO"), (&globex, "Globex")]).await;
    let mut b = Browser::new(&s.gw);

    // Not signed in: the app sends the browser to the login page, which
    // offers every provider (and the password form).
    let r = b.send(html_get(&b, "/app/reports?m=12")).await;
    assert_eq!(r.status, 303);
    let page = b.get(&location(&r)).await;
    for name in ["Acme SSO", "Globex", "Down"] {
        assert!(
            page.text.contains(&format!("Sign in with {name}")),
            "{name}"
        );
    }
    assert!(page.text.contains("name=\"password\""));

    // The authorization request: code flow, PKCE S256, state, nonce, the
    // registered redirect URI; the state bound to this browser.
    let authorize = press(&mut b, "Globex", "/app/reports?m=12").await;
    assert!(
        authorize.starts_with(&format!("{}/auth?", globex.issuer)),
        "{authorize}"
    );
    let q = query(&authorize);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["redirect_uri"], format!("{}/login/callback", s.gw));
    assert_eq!(q["scope"], "openid profile email");
    assert_eq!(q["nonce"].len(), 43);
    assert_eq!(b.cookies["gatehouse-signin"], q["state"]);

    // bob at the provider, back at the gateway: signed in, on to the page
    // first asked for; the sign-in's cookie is gone.
    let callback = at_provider(&mut b, &globex, &authorize, "bob").await;
    assert_eq!(query(&callback)["iss"], globex.issuer);
    let r = b.get(&callback).await;
    assert_eq!(location(&r), "/app/reports?m=12");
    assert!(b.cookies.contains_key("gatehouse-session"));
    assert!(!b.cookies.contains_key("gatehouse-signin"));

    // The linked account, as bearer tokens of that provider would have it:
    // its username, the mapped roles; and its provider login had a second
    // factor, so the admins' MFA route admits the session too.
    let r = b.send(html_get(&b, "/app/reports?m=12")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bob = r.body["headers"]["request-user-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let roles = r.body["headers"]["request-user-roles"].as_str().unwrap();
    assert_eq!(roles, "admin,user");
    let r = b.send(html_get(&b, "/secure/x")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = b.send(html_get(&b, "/staff/x")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let admin = admin_token(&s).await;
    let r = s.get(&admin, &format!("/api/users/{bob}")).await;
    assert_eq!(r.body["username"], "fed.bob", "{}", r.text);
    assert_eq!(
        r.body["linked_identity"],
        json!({"issuer": globex.issuer, "subject": "bob"})
    );
    // A bearer token of the same person at the same provider is the same
    // account: one id space.
    let token = globex.token("bob", &[]).await;
    let r = s.get(&token, "/api/echo/x").await;
    assert_eq!(r.body["headers"]["request-user-id"], bob.as_str());

    // The answer works once: again, even with the cookie put back, is a
    // page that says to start again, and nobody else is signed in by it.
    let mut replay = Browser::new(&s.gw);
    let r = replay.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.text);
    replay
        .cookies
        .insert("gatehouse-signin".into(), query(&callback)["state"].clone());
    let r = replay.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("start again"), "{}", r.text);
    assert!(!replay.cookies.contains_key("gatehouse-session"));

    // alice through the other provider: her own account (a user, one
    // factor at her provider), refused where a second factor is needed.
    let mut b = Browser::new(&s.gw);
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    assert!(authorize.starts_with(&acme.issuer));
    let callback = at_provider(&mut b, &acme, &authorize, "alice").await;
    assert_eq!(location(&b.get(&callback).await), "/app/");
    let r = b.send(html_get(&b, "/app/")).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.body["headers"]["request-user-id"], bob.as_str());
    assert_eq!(r.body["headers"]["request-user-roles"], "user");
    let r = b.get("/secure/x").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("second factor"), "{}", r.text);
    let r = b.get("/staff/x").await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[actix_web::test]
async fn a_provider_answer_is_checked_before_anyone_is_signed_in() {
    let idp = provider();
    let s = stack_with(&[(&idp, "Acme SSO")]).await;

    // Login CSRF: an answer for a sign-in another browser started (the
    // attacker's own code) signs nobody in here.
    let mut attacker = Browser::new(&s.gw);
    let authorize = press(&mut attacker, "Acme SSO", "/app/").await;
    let callback = at_provider(&mut attacker, &idp, &authorize, "carol").await;
    let mut victim = Browser::new(&s.gw);
    let r = victim.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    assert!(!victim.cookies.contains_key("gatehouse-session"));

    // Mix-up (RFC 9207): the same answer said to come from another issuer.
    let mut b = Browser::new(&s.gw);
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    let callback = at_provider(&mut b, &idp, &authorize, "alice").await;
    let forged = callback.replace(
        &form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>(),
        "http%3A%2F%2Fevil.example",
    );
    assert_ne!(forged, callback);
    let r = b.get(&forged).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!b.cookies.contains_key("gatehouse-session"));
    // ...and that sign-in is spent: the genuine answer no longer works.
    let r = b.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Refused at the provider: a page that says so.
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    let state = query(&authorize)["state"].clone();
    let refused = format!(
        "/login/callback?error=access_denied&state={state}&iss={}",
        form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>()
    );
    let r = b.get(&refused).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.text.contains("Acme SSO did not sign you in"),
        "{}",
        r.text
    );
    // A made-up code (the provider's token endpoint refuses it): 502.
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    let state = query(&authorize)["state"].clone();
    let iss = form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>();
    let r = b
        .get(&format!(
            "/login/callback?code=made-up&state={state}&iss={iss}"
        ))
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(!b.cookies.contains_key("gatehouse-session"));

    // A provider that is down: a page saying so, not a 500.
    let r = press_raw(&mut b, "Down").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("Down cannot be reached"), "{}", r.text);
    // A provider nobody configured, and a form from elsewhere.
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    let r = b
        .post(
            "/login/provider",
            &[("csrf", &csrf), ("provider", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = b
        .post(
            "/login/provider",
            &[("csrf", "forged"), ("provider", &idp.issuer)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // No open redirect through the sign-in either.
    let authorize = press(&mut b, "Acme SSO", "https://evil.example/").await;
    let callback = at_provider(&mut b, &idp, &authorize, "alice").await;
    assert_eq!(location(&b.get(&callback).await), "/login");

    // Every refusal is in the audit trail.
    let admin = admin_token(&s).await;
    let r = s
        .get(&admin, "/api/audit?event=login.provider_refused")
        .await;
    assert!(r.body["items"].as_array().unwrap().len() >= 5, "{}", r.text);
}

/// Press a provider's button; the answer as it is.
async fn press_raw(b: &mut Browser, name: &str) -> crate::helpers::Resp {
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    let issuer = button_issuer(&page.text, name);
    b.post("/login/provider", &[("csrf", &csrf), ("provider", &issuer)])
        .await
}

#[actix_web::test]
async fn a_deactivated_account_cannot_come_back_through_its_provider() {
    let idp = provider();
    let s = stack_with(&[(&idp, "Acme SSO")]).await;
    let mut b = Browser::new(&s.gw);
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    let callback = at_provider(&mut b, &idp, &authorize, "alice").await;
    b.get(&callback).await;
    let r = b.send(html_get(&b, "/app/")).await;
    assert_eq!(r.status, 200);
    let alice = r.body["headers"]["request-user-id"]
        .as_str()
        .unwrap()
        .to_owned();

    let admin = admin_token(&s).await;
    let r = s
        .send(
            &admin,
            reqwest::Method::PATCH,
            &format!("/api/users/{alice}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Her session ends at once, and the provider cannot sign her in again.
    let r = b.send(html_get(&b, "/app/")).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let mut again = Browser::new(&s.gw);
    let authorize = press(&mut again, "Acme SSO", "/app/").await;
    let callback = at_provider(&mut again, &idp, &authorize, "alice").await;
    let r = again.get(&callback).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("deactivated"), "{}", r.text);
    assert!(!again.cookies.contains_key("gatehouse-session"));
}

#[actix_web::test]
async fn the_providers_answer_may_reach_another_replica() {
    let idp = provider();
    let (s, f) = replicated(&[(&idp, "Acme SSO")]).await;
    let (other, _h) = s.another_gateway(&f).await;
    let mut b = Browser::new(&s.gw);
    let authorize = press(&mut b, "Acme SSO", "/app/").await;
    let callback = at_provider(&mut b, &idp, &authorize, "alice").await;
    // Behind a load balancer the callback lands on the other replica.
    let mut b2 = Browser::new(&other);
    b2.cookies = b.cookies.clone();
    let r = b2.get(&callback.replace(&s.gw, &other)).await;
    assert_eq!(location(&r), "/app/");
    let r = b2.send(html_get(&b2, "/app/")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    b.cookies = b2.cookies.clone();
    assert_eq!(b.send(html_get(&b, "/app/")).await.status, 200);
    // And the first replica knows that sign-in is spent.
    b.cookies
        .insert("gatehouse-signin".into(), query(&callback)["state"].clone());
    let r = b.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("already used"), "{}", r.text);
}
