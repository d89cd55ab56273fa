//! Browser sessions on routes (`access: {session: true}`), `/api/me/sessions`
//! and the forward-auth decisions at `/auth/verify`, driven as a browser and
//! an ingress would drive them: the cookie the login page sets, the headers
//! a browser adds, the headers nginx, Traefik and Envoy send.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::oidc::{Browser, field, location};

/// A session route for users, one for admins with a second factor, a
/// bearer-only route, and an upstream that sets the gateway's cookies.
fn routes() -> Value {
    base_routes(json!([
        {"prefix": "/app", "upstream": "echo", "access": {"roles": ["user", "admin"], "session": true}},
        {"prefix": "/staff", "upstream": "echo", "access": {"roles": ["admin"], "mfa": true, "session": true}},
        {"prefix": "/tokens-only", "upstream": "echo", "access": "authenticated"},
        {"prefix": "/set-cookie", "upstream": "echo", "access": "public"},
    ]))
}

fn with_routes(l: common::config::Loader) -> common::config::Loader {
    l.set("routes", routes())
}

/// Post the login page's form (its anti-CSRF token `csrf`) as `user`,
/// going on to `return_to` if given.
async fn post_password(
    b: &mut Browser,
    csrf: &str,
    user: &str,
    password: &str,
    return_to: Option<&str>,
) -> crate::helpers::Resp {
    let mut form = vec![("csrf", csrf), ("username", user), ("password", password)];
    form.extend(return_to.map(|r| ("return_to", r)));
    b.post("/login", &form).await
}

/// Sign in on the login page as `user`; the browser keeps the cookie.
async fn signed_in(s: &Stack, user: &str, password: &str) -> Browser {
    let mut b = Browser::new(&s.gw);
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    let r = post_password(&mut b, &csrf, user, password, None).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(
        b.cookies.contains_key("gatehouse-session"),
        "{:?}",
        b.cookies
    );
    b
}

/// A browser navigation's `GET` (it accepts HTML).
pub fn html_get(b: &Browser, path: &str) -> reqwest::RequestBuilder {
    b.client
        .get(b.absolute(path))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
}

#[actix_web::test]
async fn a_session_is_admitted_like_a_token_and_its_cookie_stays_at_the_gateway() {
    let s = spawn_stack_with(with_routes).await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let mut b = signed_in(&s, "alice", "alice-password-1").await;

    // Admitted with the account's identity under the proof; the upstream
    // never sees the session cookie (or the anti-CSRF one), only its own.
    let r = b
        .send(
            b.client
                .get(b.absolute("/app/page?x=1"))
                .header("cookie", "theme=dark"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.body["headers"];
    assert_eq!(h["request-user-id"], alice.as_str());
    assert_eq!(h["request-user-roles"], "user");
    proof_covered(&s, "echo", h);
    let cookie = h["cookie"].as_str().unwrap_or("");
    assert!(!cookie.contains("gatehouse-"), "{cookie}");
    assert!(cookie.contains("theme=dark"), "{cookie}");

    // The same cookie is no credential where the route does not say so.
    b.get("/tokens-only/x").await.invalid_token();
    // A client-sent identity never passes.
    let r = b
        .send(
            b.client
                .get(b.absolute("/app/x"))
                .header("request-user-id", uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(r.body["headers"]["request-user-id"], alice.as_str());
    // A bearer token decides alone: a bad one is refused, cookie or not.
    let r = b
        .send(
            b.client
                .get(b.absolute("/app/x"))
                .bearer_auth("not-a-token"),
        )
        .await;
    r.invalid_token();

    // Unsafe methods: only with the browser's word that it is this site's.
    let post = |b: &Browser| b.client.post(b.absolute("/app/notes")).body("n=1");
    let r = b
        .send(post(&b).header("sec-fetch-site", "same-origin"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = b.send(post(&b).header("origin", &s.gw)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
    ] {
        let r = b.send(post(&b).header(name, value)).await;
        r.problem(403);
        assert!(r.text.contains("from this site"), "{}", r.text);
    }
    // A client that says neither (not a browser) sends the header instead.
    b.send(post(&b)).await.problem(403);
    let r = b.send(post(&b).header("x-gatehouse-csrf", "1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A cross-site post is refused whether or not the cookie came along.
    let mut stranger = Browser::new(&s.gw);
    stranger
        .send(post(&stranger).header("sec-fetch-site", "cross-site"))
        .await
        .problem(403);

    // An upstream cannot set (or fix) the gateway's cookies; its own pass.
    let r = b.get("/set-cookie").await;
    let set: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set, ["app=1; Path=/"], "{set:?}");

    // The rule still decides: a user is no admin.
    let r = b.send(html_get(&b, "/staff/x")).await;
    r.problem(403);
}

#[actix_web::test]
async fn a_browser_without_a_session_goes_to_the_login_page_and_comes_back() {
    let s = spawn_stack_with(with_routes).await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let mut b = Browser::new(&s.gw);
    let r = b.send(html_get(&b, "/app/page?x=1&y=%2F")).await;
    let to = location(&r);
    assert_eq!(to, "/login?return_to=%2Fapp%2Fpage%3Fx%3D1%26y%3D%252F");
    assert_eq!(r.headers["cache-control"], "no-store");
    // Anything but a navigation gets the problem.
    let r = b.get("/app/page").await;
    r.problem(401);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"gatehouse\"");
    let r = b
        .send(
            b.client
                .post(b.absolute("/app/page"))
                .header("accept", "text/html")
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
    r.problem(401);

    // Sign in on the page it was sent to: back to the exact URL.
    let page = b.get(&to).await;
    assert_eq!(field(&page.text, "return_to"), "/app/page?x=1&y=%2F");
    let csrf = field(&page.text, "csrf");
    let back = Some("/app/page?x=1&y=%2F");
    let r = post_password(&mut b, &csrf, "alice", "alice-password-1", back).await;
    assert_eq!(location(&r), "/app/page?x=1&y=%2F");
    let r = b.send(html_get(&b, "/app/page?x=1&y=%2F")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["headers"]["request-user-id"], alice.as_str());
    assert_eq!(r.body["query"], "x=1&y=%2F");

    // No open redirect: another host is ignored (the login page's own
    // page after sign-in instead).
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "https://127.0.0.1.evil.example/",
        "https://user@evil.example/",
    ] {
        let mut other = Browser::new(&s.gw);
        let page = other
            .get(&format!(
                "/login?return_to={}",
                form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            ))
            .await;
        assert!(!page.text.contains("name=\"return_to\""), "{evil}");
        let csrf = field(&page.text, "csrf");
        let r = post_password(&mut other, &csrf, "alice", "alice-password-1", Some(evil)).await;
        assert_eq!(location(&r), "/login", "{evil}");
    }

    // Signed out: the page is refused again (sent back to the login page).
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    let old = b.cookies.clone();
    let r = b.post("/login/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut replay = Browser::new(&s.gw);
    replay.cookies = old;
    let r = replay.send(html_get(&replay, "/app/page")).await;
    assert!(location(&r).starts_with("/login?return_to="));
}

#[actix_web::test]
async fn a_session_needs_the_second_factor_the_rule_needs() {
    let s = spawn_stack_with(with_routes).await;
    let mut b = signed_in(&s, "admin", ADMIN_PASSWORD).await;
    // An admin signed in with a password alone: the rule wants more.
    let r = b.send(html_get(&b, "/staff/x")).await;
    r.problem(403);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_user_authentication")
    );
    let r = b.send(html_get(&b, "/app/x")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_web::test]
async fn users_see_and_end_their_own_sessions_and_nobody_elses() {
    let s = spawn_stack_with(with_routes).await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    s.create_user(&admin, "bob", &["user"]).await;
    let mut laptop = signed_in(&s, "alice", "alice-password-1").await;
    let mut phone = signed_in(&s, "alice", "alice-password-1").await;
    let mut bob = signed_in(&s, "bob", "bob-password-1").await;

    // By cookie: both of alice's, the laptop's marked current.
    let r = laptop
        .send(
            laptop
                .client
                .get(laptop.absolute("/api/me/sessions"))
                .header("user-agent", "laptop-browser"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let list = r.body["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    for x in &list {
        assert_eq!(x["address"], "127.0.0.1");
        assert_eq!(x["auth_methods"], json!(["pwd"]));
        for k in ["id", "device", "created_at", "last_seen_at", "expires_at"] {
            assert!(!x[k].is_null(), "{k}: {x}");
        }
    }
    let phone_id = list.iter().find(|x| x["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // By bearer token: the same list, none current.
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    let r = s.get(&token, "/api/me/sessions").await;
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 2);
    assert!(
        r.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["current"] == false)
    );

    // Bob cannot end alice's session (as unknown as a made-up id).
    let r = bob
        .send(
            bob.client
                .delete(bob.absolute(&format!("/api/me/sessions/{phone_id}")))
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
    r.problem(404);
    let r = bob
        .send(
            bob.client
                .delete(bob.absolute("/api/me/sessions/not-an-id"))
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
    r.problem(404);
    // Nor can another site make alice's browser end one.
    let r = laptop
        .send(
            laptop
                .client
                .delete(laptop.absolute(&format!("/api/me/sessions/{phone_id}")))
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
    r.problem(403);
    assert_eq!(phone.get("/app/x").await.status, 200);

    // Alice ends the phone's: refused there at once, the laptop's stays.
    let r = laptop
        .send(
            laptop
                .client
                .delete(laptop.absolute(&format!("/api/me/sessions/{phone_id}")))
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    phone.get("/app/x").await.problem(401);
    assert_eq!(laptop.get("/app/x").await.status, 200);
    let r = s.get(&token, "/api/me/sessions").await;
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 1);

    // Sign out everywhere: every session and token of alice's ends; bob's stay.
    let r = s
        .send(&token, Method::DELETE, "/api/me/sessions", json!(null))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    laptop.get("/app/x").await.problem(401);
    s.get(&token, "/api/me/sessions").await.invalid_token();
    assert_eq!(bob.get("/app/x").await.status, 200);
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    let r = s.get(&token, "/api/me/sessions").await;
    assert_eq!(r.body["sessions"], json!([]), "{}", r.text);
    // No credential at all: 401.
    read(s.client.get(s.url("/api/me/sessions")))
        .await
        .problem(401);
    let _ = alice;
}

#[actix_web::test]
async fn a_deactivated_account_loses_its_session_at_once() {
    let s = spawn_stack_with(with_routes).await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let mut b = signed_in(&s, "alice", "alice-password-1").await;
    assert_eq!(b.get("/app/x").await.status, 200);
    let r = s
        .send(
            &admin,
            Method::PATCH,
            &format!("/api/users/{alice}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    b.get("/app/x").await.problem(401);
    // And cannot sign in again.
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    let r = post_password(&mut b, &csrf, "alice", "alice-password-1", None).await;
    assert_ne!(r.status, 303, "{}", r.text);
}

#[actix_web::test]
async fn signing_out_on_one_replica_refuses_the_session_on_the_other() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    let f = move |l| with_routes(shared(l)).set("revocations.resync_secs", 3600);
    let s = spawn_stack_with(f.clone()).await;
    let (other_gw, _h) = s.another_gateway(&f).await;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut b = signed_in(&s, "admin", ADMIN_PASSWORD).await;
    let mut b2 = Browser::new(&other_gw);
    b2.cookies = b.cookies.clone();
    // Both replicas admit it (and remember it).
    assert_eq!(b.get("/app/x").await.status, 200);
    assert_eq!(b2.get("/app/x").await.status, 200);
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    b.post("/login/logout", &[("csrf", &csrf)]).await;
    b2.get("/app/x").await.problem(401);
}

/// The headers an ingress sends with its question, on top of `extra`.
fn asked(s: &Stack, path: &str, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let mut rb = s.client.get(s.url(path));
    for (k, v) in pairs {
        rb = rb.header(*k, *v);
    }
    rb
}

#[actix_web::test]
async fn forward_auth_decides_for_trusted_proxies_only() {
    // Not trusted: no decision, whatever the headers say.
    let s = spawn_stack_with(with_routes).await;
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let r =
        read(asked(&s, "/auth/verify", &[("x-forwarded-uri", "/app/x")]).bearer_auth(&token)).await;
    r.problem(403);
    assert!(r.text.contains("trusted_proxies"), "{}", r.text);
    assert!(r.headers.get("request-user-id").is_none());
}

#[actix_web::test]
async fn forward_auth_applies_the_route_table_to_the_original_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let public = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let s = spawn_stack_on(listener, move |l| {
        with_routes(l)
            .set("trusted_proxies", json!(["127.0.0.1/32"]))
            .set("tokens.public_url", public.clone())
    })
    .await;
    let admin = admin_token(&s).await;
    let alice = s.create_user(&admin, "alice", &["user"]).await;
    let (token, _) = s.tokens("alice", "alice-password-1").await;
    let host = s.gw.trim_start_matches("http://").to_owned();

    // Traefik's headers, a bearer token: allowed, with the identity and the
    // proof for the route's upstream.
    let traefik = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-uri", "/app/page?x=1"),
    ];
    let r = read(asked(&s, "/auth/verify", &traefik).bearer_auth(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["request-user-id"], alice.as_str());
    assert_eq!(r.headers["request-user-roles"], "user");
    assert_eq!(r.headers["cache-control"], "no-store");
    let echoed: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("request-user") || k.as_str() == "x-gateway-token")
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    proof_covered(&s, "echo", &Value::Object(echoed));

    // The rule is the route's for the original method: DELETE on
    // /api/echo/admin is for admins.
    let r = read(
        asked(
            &s,
            "/auth/verify",
            &[
                ("x-original-method", "DELETE"),
                ("x-original-uri", "/api/echo/admin/1"),
            ],
        )
        .bearer_auth(&token),
    )
    .await;
    r.problem(403);
    // No route: 403 (an ingress takes anything but 2xx, 401, 403 for its own error).
    read(asked(&s, "/auth/verify", &[("x-original-uri", "/nowhere")]).bearer_auth(&token))
        .await
        .problem(403);
    // Nothing said about the request: 403.
    read(asked(&s, "/auth/verify", &[]).bearer_auth(&token))
        .await
        .problem(403);
    // A public route: allowed with empty identity headers, for the ingress
    // to drop what the client sent.
    let r = read(asked(
        &s,
        "/auth/verify",
        &[("x-original-uri", "/public/x")],
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["request-user-id"], "");
    assert_eq!(r.headers["x-gateway-token"], "");

    // Envoy: the original method, and the original path after the prefix.
    let r = read(
        s.client
            .request(Method::PATCH, s.url("/auth/verify/api/echo/admin/1?q=2"))
            .bearer_auth(&token),
    )
    .await;
    r.problem(403);
    let r = read(
        s.client
            .get(s.url("/auth/verify/api/echo/admin/1?q=2"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A browser without a session: 401 with the login page, coming back
    // to the original URL; with `redirect=true` (Traefik) a 303.
    let nav = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "127.0.0.1:8443"),
        ("x-forwarded-uri", "/app/page?x=1"),
        ("accept", "text/html"),
    ];
    let r = read(asked(&s, "/auth/verify", &nav)).await;
    r.problem(401);
    let login = r.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        login,
        format!(
            "{}/login?return_to=https%3A%2F%2F127.0.0.1%3A8443%2Fapp%2Fpage%3Fx%3D1",
            s.gw
        )
    );
    let r = read(asked(&s, "/auth/verify?redirect=true", &nav)).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"].to_str().unwrap(), login);
    // The login page takes that URL back (the host is the gateway's own).
    let mut b = Browser::new(&s.gw);
    let page = b.get(&login).await;
    assert_eq!(
        field(&page.text, "return_to"),
        "https://127.0.0.1:8443/app/page?x=1"
    );

    // A session cookie, and the same-site check on the original request.
    let b = signed_in(&s, "alice", "alice-password-1").await;
    let cookie = format!(
        "gatehouse-session={}; theme=dark",
        b.cookies["gatehouse-session"]
    );
    let r = read(asked(&s, "/auth/verify", &traefik).header("cookie", &cookie)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["request-user-id"], alice.as_str());
    assert_eq!(r.headers["x-gatehouse-cookie"], "theme=dark");
    let unsafe_cross = [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-uri", "/app/notes"),
        ("sec-fetch-site", "cross-site"),
    ];
    read(asked(&s, "/auth/verify", &unsafe_cross).header("cookie", &cookie))
        .await
        .problem(403);
    let origin = s.gw.clone();
    let unsafe_same = [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-uri", "/app/notes"),
        ("origin", origin.as_str()),
    ];
    let r = read(asked(&s, "/auth/verify", &unsafe_same).header("cookie", &cookie)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
