//! The hosted login page and the OpenID Connect code flow, driven as a
//! browser would drive them (cookies kept, redirects looked at one by
//! one, forms posted with the token the page gave): sign-in, consent,
//! codes, PKCE, ID tokens, userinfo, refresh, revocation and sign-out,
//! and every way they must refuse.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::helpers::*;

pub const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// A form-encoded body.
pub trait FormExt {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// A browser: a cookie jar, no automatic redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            client: testkit::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }

    pub async fn send(&mut self, rb: reqwest::RequestBuilder) -> Resp {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let rb = if cookie.is_empty() {
            rb
        } else {
            rb.header("cookie", cookie)
        };
        let r = read(rb).await;
        for sc in r.headers.get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        r
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        let rb = self.client.get(self.absolute(url));
        self.send(rb).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let rb = self
            .client
            .post(self.absolute(url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(rb).await
    }
}

/// A hidden field's value in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

pub fn location(r: &Resp) -> String {
    assert_eq!(r.status, 303, "{}", r.text);
    r.headers["location"].to_str().unwrap().to_owned()
}

/// The query of a URL as a map.
pub fn query(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn pkce() -> (String, String) {
    let verifier =
        URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()) + "-and-some-more-characters";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Register an application as the admin: `(client_id, secret)`.
pub async fn register(s: &Stack, admin: &str, extra: Value) -> (String, Option<String>) {
    let mut body =
        json!({"name": "Example app", "redirect_uris": [CALLBACK], "scopes": ["orders:read"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.send(admin, Method::POST, "/api/clients", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["client_id"].as_str().unwrap().to_owned(),
        r.body["client_secret"].as_str().map(str::to_owned),
    )
}

pub fn authorize_url(client_id: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "openid profile email")
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("/oauth/authorize?{}", q.finish())
}

/// Through the login page: from an answer that sends the browser there,
/// to the answer after signing in (a 303 back to where it came from).
pub async fn sign_in(b: &mut Browser, to_login: &Resp, user: &str, password: &str) -> Resp {
    let login = location(to_login);
    assert!(login.starts_with("/login?"), "{login}");
    let page = b.get(&login).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = field(&page.text, "csrf");
    let back = field(&page.text, "return_to");
    b.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", user),
            ("password", password),
            ("return_to", &back),
        ],
    )
    .await
}

/// The code in a redirect back to the application (checking `state` and `iss`).
pub fn code_of(r: &Resp) -> String {
    let to = location(r);
    assert!(to.starts_with(CALLBACK), "{to}");
    let q = query(&to);
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"), "{to}");
    assert_eq!(q.get("iss").map(String::as_str), Some("gatehouse"), "{to}");
    q.get("code")
        .unwrap_or_else(|| panic!("no code: {to}"))
        .clone()
}

pub async fn exchange(
    s: &Stack,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    verifier: &str,
) -> Resp {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ];
    if let Some(sec) = secret {
        form.push(("client_secret", sec));
    }
    read(s.client.post(s.url("/api/oauth/token")).form_of(&form)).await
}

/// Sign in as `user` through the page for a first-party public app and
/// exchange the code: the token response.
async fn full_flow(
    s: &Stack,
    b: &mut Browser,
    client_id: &str,
    user: &str,
    password: &str,
) -> Resp {
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(client_id, &challenge, &[])).await;
    let r = sign_in(b, &r, user, password).await;
    let r = b.get(&location(&r)).await;
    let code = code_of(&r);
    exchange(s, client_id, None, &code, &verifier).await
}

#[actix_web::test]
async fn a_user_signs_in_through_the_page_and_the_app_gets_tokens() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (client_id, secret) =
        register(&s, &admin, json!({"public": true, "first_party": true})).await;
    assert!(secret.is_none(), "a public client has no secret");
    let mut b = Browser::new(&s.gw);
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(&client_id, &challenge, &[])).await;
    // Not signed in: to the login page, which works without a session.
    let login = location(&r);
    let page = b.get(&login).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(
        page.text.contains("<label for=\"username\">"),
        "{}",
        page.text
    );
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("gatehouse-session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let r = b.get(&location(&r)).await;
    let code = code_of(&r);
    let t = exchange(&s, &client_id, None, &code, &verifier).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.headers["cache-control"], "no-store");
    let id = jwt_claims(t.body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], client_id.as_str());
    assert_eq!(id["iss"], "gatehouse");
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["preferred_username"], "admin");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(
        id["at_hash"].is_string() && id["sid"].is_string() && id["auth_time"].is_i64(),
        "{id}"
    );
    let access = t.body["access_token"].as_str().unwrap();
    let at = jwt_claims(access);
    assert_eq!(at["azp"], client_id.as_str());
    assert_eq!(at["scope"], "openid profile email");
    // A first-party app's token is the user's: its roles.
    assert_eq!(s.get(access, "/api/me").await.status, 200);
    let info = s.get(access, "/oauth/userinfo").await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.body["preferred_username"], "admin");
    assert_eq!(info.body["sub"], id["sub"]);
    // The ID token is never an access token.
    s.get(t.body["id_token"].as_str().unwrap(), "/api/me")
        .await
        .invalid_token();

    // A second app, same browser: no new sign-in.
    let (other, _) = register(&s, &admin, json!({"public": true, "first_party": true})).await;
    let (v2, c2) = pkce();
    let r = b.get(&authorize_url(&other, &c2, &[])).await;
    let code = code_of(&r);
    assert_eq!(exchange(&s, &other, None, &code, &v2).await.status, 200);

    // Refresh rotates; the spent one is refused and ends the session.
    let rt = t.body["refresh_token"].as_str().unwrap();
    let refresh = |token: String, cid: String| {
        let s = &s;
        async move {
            read(s.client.post(s.url("/api/oauth/token")).form_of(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", cid.as_str()),
            ]))
            .await
        }
    };
    let r2 = refresh(rt.to_owned(), client_id.clone()).await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert!(r2.body["id_token"].is_string());
    // Bound to its app: another app, or /api/refresh, cannot use it.
    let rt2 = r2.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        refresh(rt2.clone(), other.clone()).await.body["error"],
        "invalid_grant"
    );
    s.refresh(&rt2).await.problem(401);
    // Revocation (RFC 7009) ends it.
    let rv = read(
        s.client
            .post(s.url("/api/oauth/revoke"))
            .form_of(&[("token", rt2.as_str()), ("client_id", client_id.as_str())]),
    )
    .await;
    assert_eq!(rv.status, 200, "{}", rv.text);
    assert_eq!(
        refresh(rt2, client_id.clone()).await.body["error"],
        "invalid_grant"
    );
    s.get(r2.body["access_token"].as_str().unwrap(), "/api/me")
        .await
        .invalid_token();
}

#[actix_web::test]
async fn a_code_is_single_use_bound_to_its_verifier_and_a_replay_revokes() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (client_id, secret) = register(&s, &admin, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let mut b = Browser::new(&s.gw);
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(&client_id, &challenge, &[])).await;
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    let r = b.get(&location(&r)).await;
    let code = code_of(&r);
    // A confidential client must authenticate.
    let anon = exchange(&s, &client_id, None, &code, &verifier).await;
    assert_eq!(
        (anon.status.as_u16(), anon.body["error"].as_str()),
        (401, Some("invalid_client")),
        "{}",
        anon.text
    );
    // The wrong verifier: refused, and the code is spent.
    let (other_verifier, _) = pkce();
    let bad = exchange(&s, &client_id, Some(&secret), &code, &other_verifier).await;
    assert_eq!(bad.body["error"], "invalid_grant", "{}", bad.text);
    assert_eq!(
        exchange(&s, &client_id, Some(&secret), &code, &verifier)
            .await
            .body["error"],
        "invalid_grant"
    );

    // A code used twice: the second use revokes what the first issued.
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(&client_id, &challenge, &[])).await;
    let code = code_of(&r);
    let first = exchange(&s, &client_id, Some(&secret), &code, &verifier).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let access = first.body["access_token"].as_str().unwrap();
    assert_eq!(s.get(access, "/api/me").await.status, 200);
    let again = exchange(&s, &client_id, Some(&secret), &code, &verifier).await;
    assert_eq!(again.body["error"], "invalid_grant");
    s.get(access, "/api/me").await.invalid_token();
    let rt = first.body["refresh_token"].as_str().unwrap();
    let r = read(
        s.client
            .post(s.url("/api/oauth/token"))
            .basic_auth(&client_id, Some(&secret))
            .form_of(&[("grant_type", "refresh_token"), ("refresh_token", rt)]),
    )
    .await;
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.text);
}

#[actix_web::test]
async fn bad_requests_never_redirect_anywhere_they_should_not() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (client_id, _) = register(&s, &admin, json!({"public": true})).await;
    let mut b = Browser::new(&s.gw);
    let (_, challenge) = pkce();
    // Not registered, or unknown: an error page, no Location.
    let evil = authorize_url(&client_id, &challenge, &[]).replace("127.0.0.1%3A9", "evil.example");
    for url in [evil, authorize_url("no-such-client", &challenge, &[])] {
        let r = b.get(&url).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.headers.get("location").is_none());
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    // Everything else goes back to the app, with state and iss.
    let cases = [
        (
            authorize_url(&client_id, &challenge, &[])
                .replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            authorize_url(&client_id, &challenge, &[])
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (authorize_url(&client_id, "short", &[]), "invalid_request"),
        (
            authorize_url(&client_id, &challenge, &[])
                .replace("scope=openid", "scope=admin+openid"),
            "invalid_scope",
        ),
        (
            authorize_url(&client_id, &challenge, &[("prompt", "none")]),
            "login_required",
        ),
    ];
    for (url, error) in cases {
        let r = b.get(&url).await;
        let to = location(&r);
        assert!(to.starts_with(CALLBACK), "{to}");
        let q = query(&to);
        assert_eq!(q.get("error").map(String::as_str), Some(error), "{to}");
        assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
        assert_eq!(q.get("iss").map(String::as_str), Some("gatehouse"));
    }
    // Only a registered URI can be registered: https, or http on loopback.
    let r = s
        .send(
            &admin,
            Method::POST,
            "/api/clients",
            json!({"name": "x", "redirect_uris": ["http://app.example.com/cb"]}),
        )
        .await;
    assert_eq!(
        r.problem(422)["errors"][0]["field"],
        "redirect_uris",
        "{}",
        r.text
    );
    // The login page goes on only to a path of its own.
    let page = b.get("/login?return_to=https://evil.example/").await;
    assert!(!page.text.contains("evil.example"), "{}", page.text);
    let csrf = field(&page.text, "csrf");
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("return_to", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(location(&r), "/login");
}

#[actix_web::test]
async fn third_party_apps_need_consent_remembered_per_user() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (client_id, _) = register(&s, &admin, json!({"public": true})).await;
    let mut b = Browser::new(&s.gw);
    let (verifier, challenge) = pkce();
    let url = authorize_url(&client_id, &challenge, &[]);
    let r = b.get(&url).await;
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    // Signed in, but this app was never allowed: prompt=none says so.
    let none = b
        .get(&authorize_url(
            &client_id,
            &challenge,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(
        query(&location(&none)).get("error").map(String::as_str),
        Some("consent_required")
    );
    let consent = b.get(&location(&r)).await;
    assert_eq!(consent.status, 200, "{}", consent.text);
    assert!(
        consent.text.contains("Example app") && consent.text.contains("See your e-mail address"),
        "{}",
        consent.text
    );
    let csrf = field(&consent.text, "csrf");
    let mut form: Vec<(String, String)> = query(&url).into_iter().collect();
    form.push(("csrf".into(), csrf.clone()));
    // Deny: access_denied.
    let mut deny = form.clone();
    deny.push(("decision".into(), "deny".into()));
    let pairs: Vec<(&str, &str)> = deny.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = b.post("/oauth/authorize", &pairs).await;
    assert_eq!(
        query(&location(&r)).get("error").map(String::as_str),
        Some("access_denied")
    );
    // Without the page's token, no consent is taken.
    let mut forged: Vec<(String, String)> = query(&url).into_iter().collect();
    forged.push(("decision".into(), "allow".into()));
    let pairs: Vec<(&str, &str)> = forged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(b.post("/oauth/authorize", &pairs).await.status, 403);
    // Allow: a code; the next time no page.
    form.push(("decision".into(), "allow".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = b.post("/oauth/authorize", &pairs).await;
    let t = exchange(&s, &client_id, None, &code_of(&r), &verifier).await;
    assert_eq!(t.status, 200, "{}", t.text);
    // A third-party app's token carries none of the user's roles.
    let at = jwt_claims(t.body["access_token"].as_str().unwrap());
    assert_eq!(at["roles"], json!([]));
    let (_, c2) = pkce();
    let again = b.get(&authorize_url(&client_id, &c2, &[])).await;
    code_of(&again);
    // The user sees the consent and withdraws it: the app's tokens end,
    // and it must ask again.
    let app_token = t.body["access_token"].as_str().unwrap().to_owned();
    let listed = s.get(&admin, "/api/me/consents").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body[0]["client_id"], client_id.as_str());
    assert_eq!(
        listed.body[0]["scopes"],
        json!(["openid", "profile", "email"])
    );
    let gone = s
        .send(
            &admin,
            Method::DELETE,
            &format!("/api/me/consents/{client_id}"),
            json!({}),
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    s.get(&app_token, "/oauth/userinfo").await.invalid_token();
    let asked = b.get(&authorize_url(&client_id, &c2, &[])).await;
    assert_eq!(asked.status, 200, "the consent page again: {}", asked.text);
    s.send(
        &admin,
        Method::DELETE,
        &format!("/api/me/consents/{client_id}"),
        json!({}),
    )
    .await
    .problem(404);
}

#[actix_web::test]
async fn max_age_prompt_login_and_mfa_send_the_user_back_to_sign_in() {
    let s = spawn_stack().await;
    let admin = admin_token(&s).await;
    let (client_id, _) = register(&s, &admin, json!({"public": true, "first_party": true})).await;
    let mut b = Browser::new(&s.gw);
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(&client_id, &challenge, &[])).await;
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    code_of(&b.get(&location(&r)).await);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // Too old for max_age=1: sign in again, then a code whose auth_time is new.
    let r = b
        .get(&authorize_url(&client_id, &challenge, &[("max_age", "1")]))
        .await;
    assert!(location(&r).starts_with("/login?"), "{}", location(&r));
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    let code = code_of(&b.get(&location(&r)).await);
    let t = exchange(&s, &client_id, None, &code, &verifier).await;
    let id = jwt_claims(t.body["id_token"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    assert!(now - id["auth_time"].as_i64().unwrap() <= 2, "{id}");
    // prompt=login always asks, and comes back without looping.
    let r = b
        .get(&authorize_url(
            &client_id,
            &challenge,
            &[("prompt", "login")],
        ))
        .await;
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    code_of(&b.get(&location(&r)).await);
    // A login_after in the future (no one but `to_login` should set it)
    // is ignored rather than sending the browser round the login page.
    let future = (chrono::Utc::now().timestamp() + 3600).to_string();
    code_of(
        &b.get(&authorize_url(
            &client_id,
            &challenge,
            &[("login_after", &future)],
        ))
        .await,
    );
    // A second factor asked for: the user enrols one and signs in with it.
    let (token, _) = s.tokens("admin", ADMIN_PASSWORD).await;
    let enrolled = crate::mfa::enrol(&s, &token, ADMIN_PASSWORD).await;
    let acr = [("acr_values", "urn:gatehouse:acr:mfa")];
    let r = b.get(&authorize_url(&client_id, &challenge, &acr)).await;
    let r = sign_in(&mut b, &r, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "the second step: {}", r.text);
    let csrf = field(&r.text, "csrf");
    let ch = field(&r.text, "challenge");
    let back = field(&r.text, "return_to");
    let wrong = b
        .post(
            "/login/mfa",
            &[
                ("csrf", &csrf),
                ("challenge", &ch),
                ("code", "000000"),
                ("return_to", &back),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.text.contains("The code is not right"),
        "{}",
        wrong.text
    );
    let r = b
        .post(
            "/login/mfa",
            &[
                ("csrf", &csrf),
                ("challenge", &ch),
                ("recovery_code", &enrolled.recovery[0]),
                ("return_to", &back),
            ],
        )
        .await;
    let code = code_of(&b.get(&location(&r)).await);
    let (v3, c3) = pkce();
    let _ = (v3, c3);
    let t = exchange(&s, &client_id, None, &code, &verifier).await;
    let id = jwt_claims(t.body["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:gatehouse:acr:mfa", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
}

#[actix_web::test]
async fn the_page_limits_and_locks_like_the_api_and_refuses_forged_forms() {
    let s = spawn_stack().await;
    let mut b = Browser::new(&s.gw);
    let page = b.get("/login").await;
    let csrf = field(&page.text, "csrf");
    // No token, another site's token, another site's origin: refused.
    let r = b
        .post(
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = b
        .post(
            "/login",
            &[
                ("csrf", "x".repeat(43).as_str()),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let cross = read(
        b.client
            .post(s.url("/login"))
            .header(
                "cookie",
                b.cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .header("origin", "https://evil.example")
            .form_of(&[
                ("csrf", csrf.as_str()),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ]),
    )
    .await;
    assert_eq!(cross.status, 403);
    // One message whatever was wrong.
    let wrong = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", "wrong-password-1"),
            ],
        )
        .await;
    let unknown = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "nobody"),
                ("password", "wrong-password-1"),
            ],
        )
        .await;
    assert_eq!((wrong.status.as_u16(), unknown.status.as_u16()), (401, 401));
    let msg = |t: &str| {
        t.split("role=\"alert\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(msg(&wrong.text), msg(&unknown.text));
    // The same lockout as /api/login: the budget is shared.
    for _ in 0..4 {
        b.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", "wrong-password-1"),
            ],
        )
        .await;
    }
    let locked = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert!(locked.headers.contains_key("retry-after"));
    assert!(locked.text.contains("Try again in"), "{}", locked.text);
    s.login("admin", ADMIN_PASSWORD).await.problem(429);
}

#[actix_web::test]
async fn signing_out_on_one_replica_ends_the_session_on_the_other() {
    let shared = with_redis(format!("test:{}:", uuid::Uuid::new_v4()));
    // Only the announcement can make it in time, not the resync.
    let f = move |l| shared(l).set("revocations.resync_secs", 3600);
    let s = spawn_stack_with(f.clone()).await;
    let admin = admin_token(&s).await;
    let (client_id, _) = register(
        &s,
        &admin,
        json!({"public": true, "first_party": true, "post_logout_redirect_uris": ["http://127.0.0.1:9/bye"]}),
    )
    .await;
    let (other_gw, _h) = s.another_gateway(&f).await;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut b = Browser::new(&s.gw);
    let t = full_flow(&s, &mut b, &client_id, "admin", ADMIN_PASSWORD).await;
    let id_token = t.body["id_token"].as_str().unwrap().to_owned();
    let access = t.body["access_token"].as_str().unwrap().to_owned();
    // The other replica knows the session.
    let mut b2 = Browser::new(&other_gw);
    b2.cookies = b.cookies.clone();
    let (_, challenge) = pkce();
    let none = [("prompt", "none")];
    code_of(&b2.get(&authorize_url(&client_id, &challenge, &none)).await);
    // A registered post-logout URI only.
    let bad = b
        .get(&format!("/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.headers.get("location").is_none());
    // With the hint: signed out at once, and back to the app.
    let r = b
        .get(&format!("/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fbye&state=s1"))
        .await;
    assert_eq!(location(&r), "http://127.0.0.1:9/bye?state=s1");
    // Ended on the other replica, with the app's session (no offline_access).
    let r = b2.get(&authorize_url(&client_id, &challenge, &none)).await;
    assert_eq!(
        query(&location(&r)).get("error").map(String::as_str),
        Some("login_required")
    );
    read(
        s.client
            .get(format!("{other_gw}/api/me"))
            .bearer_auth(&access),
    )
    .await
    .invalid_token();
    // Without a hint the user is asked first.
    let mut b3 = Browser::new(&s.gw);
    full_flow(&s, &mut b3, &client_id, "admin", ADMIN_PASSWORD).await;
    let ask = b3.get("/oauth/logout").await;
    assert_eq!(ask.status, 200);
    let csrf = field(&ask.text, "csrf");
    let r = b3
        .post("/oauth/logout", &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("You are signed out"));
    let r = b3.get(&authorize_url(&client_id, &challenge, &none)).await;
    assert_eq!(
        query(&location(&r)).get("error").map(String::as_str),
        Some("login_required")
    );
}

#[actix_web::test]
async fn discovery_names_every_endpoint_of_the_flow() {
    let s = spawn_stack().await;
    let d = read(s.client.get(s.url("/.well-known/openid-configuration"))).await;
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "jwks_uri",
    ] {
        assert!(
            d.body[key].as_str().is_some_and(|u| u.starts_with("http")),
            "{key}: {}",
            d.text
        );
    }
    assert_eq!(d.body["response_types_supported"], json!(["code"]));
    assert_eq!(d.body["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        d.body["authorization_response_iss_parameter_supported"],
        true
    );
    let scopes = d.body["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&json!("openid")) && scopes.contains(&json!("offline_access")));
    // The Swagger UI's client ships registered.
    let (v, c) = pkce();
    let _ = v;
    let url = authorize_url("gatehouse-docs", &c, &[]).replace(
        &form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>(),
        &form_urlencoded::byte_serialize(b"http://127.0.0.1:8000/docs/oauth2-redirect.html")
            .collect::<String>(),
    );
    let r = read(s.client.get(s.url(&url))).await;
    assert!(location(&r).starts_with("/login?"), "{}", r.text);
    let _: Value = Value::Null;
}

/// `login.path` moves the login pages; a path of the gateway's own is
/// refused at start.
#[actix_web::test]
async fn the_login_pages_live_where_login_path_says() {
    let s = spawn_stack_with(|l| l.set("login.path", "/account/sign-in")).await;
    let admin = admin_token(&s).await;
    let (client_id, _) = register(&s, &admin, json!({"public": true, "first_party": true})).await;
    let mut b = Browser::new(&s.gw);
    let (verifier, challenge) = pkce();
    let r = b.get(&authorize_url(&client_id, &challenge, &[])).await;
    let login = location(&r);
    assert!(login.starts_with("/account/sign-in?"), "{login}");
    let page = b.get(&login).await;
    assert!(
        page.text.contains("action=\"/account/sign-in\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("href=\"/account/sign-in/style.css\""));
    assert_eq!(b.get("/account/sign-in/style.css").await.status, 200);
    let csrf = field(&page.text, "csrf");
    let back = field(&page.text, "return_to");
    let r = b
        .post(
            "/account/sign-in",
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("return_to", &back),
            ],
        )
        .await;
    let code = code_of(&b.get(&location(&r)).await);
    assert_eq!(
        exchange(&s, &client_id, None, &code, &verifier)
            .await
            .status,
        200
    );
    // The old path is not the gateway's any more.
    assert_ne!(b.get("/login").await.status, 200);
    for bad in ["/oauth", "/api", "/docs/x", "/Login", "/login/", "x"] {
        let loader = gateway::Settings::loader()
            .set("data_dir", s.env.data_dir())
            .set("database.url", s.gateway_db.clone())
            .set("login.path", bad);
        let refused = match gateway::Settings::from_loader(loader) {
            Err(_) => true,
            Ok(settings) => gateway::build_with_listener(
                settings,
                std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            )
            .await
            .is_err(),
        };
        assert!(refused, "login.path {bad} accepted");
    }
}
