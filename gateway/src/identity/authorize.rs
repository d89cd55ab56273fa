//! `GET`/`POST /oauth/authorize`: the OpenID Connect authorization
//! endpoint (the code flow only, PKCE `S256` for every client, RFC 9207
//! `iss` in every response).
//!
//! The request is checked in two stages. An unknown or inactive client,
//! or a `redirect_uri` that is not exactly one it registered, gets an
//! error page: nothing is redirected anywhere (no open redirect). Every
//! other error goes back to the application as RFC 6749 section 4.1.2.1
//! says. Then the browser session: none, too old (`max_age`), without the
//! second factor `acr_values` asks for, or `prompt=login`, and the browser
//! goes to the login page and comes back here (`prompt=none`:
//! `login_required`). A third-party application needs the user's consent
//! (a page listing the scopes, remembered per user and application). Then
//! a code, single use and short-lived, goes back to the application.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use common::audit::Event;
use maud::html;

use super::Identity;
use crate::identity::apps::{self, AUTHORIZATION_CODE};
use crate::identity::browser::BrowserSession;
use crate::identity::caller::client_ip;
use crate::identity::clients::Client;
use crate::identity::codes::{self, Grant};
use crate::identity::page::{hidden, see_other};
use crate::identity::tokens::ACR_MFA;
use crate::identity::users_api::Account;

pub const AUTHORIZE_PATH: &str = "/oauth/authorize";

/// The scopes of OpenID Connect itself; any other must be one the client
/// may be granted (a route scope).
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Parameters of the consent form that are not the request's.
const FORM_ONLY: [&str; 2] = ["csrf", "decision"];

/// The request's parameters: each at most once, empty as absent.
type Params = BTreeMap<String, String>;

pub(crate) fn parse_params(raw: &[u8]) -> Result<Params, String> {
    let mut out = Params::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("the parameter `{k}` is given more than once"));
        }
    }
    Ok(out)
}

/// What `prompt` asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Prompt {
    none: bool,
    login: bool,
    consent: bool,
}

/// A checked authorization request.
#[derive(Debug)]
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scopes: Vec<String>,
    code_challenge: String,
    prompt: Prompt,
    max_age: Option<i64>,
    wants_mfa: bool,
    login_hint: Option<String>,
    /// Set on the way back from a `prompt=login` sign-in: the sign-in must
    /// be this recent (Unix seconds).
    login_after: Option<i64>,
}

/// Where an error goes: a page, or back to the application.
enum Refusal {
    Page(StatusCode, String),
    ToApp {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn page(detail: impl Into<String>) -> Self {
        Self::Page(StatusCode::BAD_REQUEST, detail.into())
    }
}

/// The first stage: the client and where it may be sent.
async fn client_and_redirect(gw: &Identity, p: &Params) -> Result<(Client, String), Refusal> {
    let client_id = p
        .get("client_id")
        .ok_or_else(|| Refusal::page("the request names no client_id"))?;
    let client = match gw.clients.find(client_id).await {
        Ok(Some(c)) if c.active && c.app.allows(AUTHORIZATION_CODE) => c,
        Ok(_) => {
            return Err(Refusal::page(
                "the client is not registered for the authorization code flow, or is not active",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the client registry failed");
            return Err(Refusal::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                gw.pages.strings.unavailable.to_owned(),
            ));
        }
    };
    let redirect_uri = p
        .get("redirect_uri")
        .ok_or_else(|| Refusal::page("the request names no redirect_uri"))?;
    if !client.app.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(Refusal::page(
            "the redirect_uri is not one the client registered (they are compared exactly)",
        ));
    }
    Ok((client, redirect_uri.clone()))
}

fn parse_prompt(v: Option<&String>) -> Result<Prompt, String> {
    let mut p = Prompt::default();
    for value in v.map(|s| s.split(' ')).into_iter().flatten() {
        match value {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            "" => {}
            other => return Err(format!("prompt `{other}` is not supported")),
        }
    }
    if p.none && (p.login || p.consent) {
        return Err("prompt=none goes with no other value".into());
    }
    Ok(p)
}

/// The second stage: everything else, each error going back to the app.
fn request(client: Client, redirect_uri: String, p: &Params) -> Result<AuthRequest, Refusal> {
    let state = p.get("state").cloned();
    let back = |error: &'static str, description: String| Refusal::ToApp {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    let bad = |d: &str| back("invalid_request", d.to_owned());
    if p.contains_key("request") {
        return Err(back(
            "request_not_supported",
            "request objects are not supported".into(),
        ));
    }
    if p.contains_key("request_uri") {
        return Err(back(
            "request_uri_not_supported",
            "request_uri is not supported".into(),
        ));
    }
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return Err(bad("response_type is required")),
        Some(other) => {
            return Err(back(
                "unsupported_response_type",
                format!("response_type `{other}` is not supported: use code"),
            ));
        }
    }
    if p.get("response_mode").is_some_and(|m| m != "query") {
        return Err(bad("response_mode must be query"));
    }
    let code_challenge = match p.get("code_challenge") {
        Some(c) if codes::is_challenge(c) => c.clone(),
        Some(_) => return Err(bad("code_challenge must be 43 base64url characters (S256)")),
        None => {
            return Err(bad(
                "PKCE is required: send code_challenge and code_challenge_method=S256",
            ));
        }
    };
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(bad("code_challenge_method must be S256"));
    }
    let scope = p.get("scope").ok_or_else(|| {
        back(
            "invalid_scope",
            "scope is required (at least openid)".into(),
        )
    })?;
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let known = OIDC_SCOPES.contains(&s) || client.scopes.iter().any(|c| c == s);
        if !known {
            return Err(back(
                "invalid_scope",
                format!("the client may not be granted `{s}`"),
            ));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    let prompt = parse_prompt(p.get("prompt")).map_err(|e| bad(&e))?;
    let max_age = match p.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("max_age must be a number of seconds"))?,
        ),
    };
    let wants_mfa = p
        .get("acr_values")
        .is_some_and(|v| v.split(' ').any(|a| a == ACR_MFA));
    let nonce = p.get("nonce").cloned();
    if nonce.as_ref().is_some_and(|n| n.len() > 512)
        || state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(bad("state or nonce is too long"));
    }
    // Only a moment already past (set by `to_login`): one in the future
    // could never be met, and the browser would go round the login page.
    let login_after = p
        .get("login_after")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|t| *t <= Utc::now().timestamp());
    Ok(AuthRequest {
        client,
        redirect_uri: redirect_uri.clone(),
        state,
        nonce,
        scopes,
        code_challenge,
        prompt,
        max_age,
        wants_mfa,
        login_hint: p.get("login_hint").cloned(),
        login_after,
    })
}

/// An answer that goes back to the application (with `state` and `iss`).
fn to_app(
    gw: &Identity,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> HttpResponse {
    let live = gw.live.load();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = state {
        all.push(("state", s));
    }
    all.push(("iss", live.tokens.issuer()));
    see_other(&apps::with_params(redirect_uri, &all)).finish()
}

fn refused(gw: &Identity, req: &HttpRequest, r: Refusal) -> HttpResponse {
    match r {
        Refusal::Page(status, detail) => gw.pages.error(req, status, &detail),
        Refusal::ToApp {
            redirect_uri,
            state,
            error,
            description,
        } => to_app(
            gw,
            &redirect_uri,
            state.as_deref(),
            &[("error", error), ("error_description", &description)],
        ),
    }
}

/// Whether the session will do for this request, as it is.
fn session_fits(s: &BrowserSession, r: &AuthRequest) -> bool {
    let auth_time = s.auth_time.timestamp();
    let now = Utc::now().timestamp();
    !(r.prompt.login && r.login_after.is_none())
        && r.login_after.is_none_or(|t| auth_time >= t)
        && r.max_age.is_none_or(|m| now - auth_time <= m)
        && (!r.wants_mfa || s.has_second_factor())
}

/// The login page, then back here: the same request, without
/// `prompt=login` (met by the sign-in that follows).
fn to_login(gw: &Identity, p: &Params, r: &AuthRequest) -> HttpResponse {
    let mut again = p.clone();
    for k in FORM_ONLY {
        again.remove(k);
    }
    if r.prompt.login {
        again.remove("prompt");
        again.insert("login_after".into(), Utc::now().timestamp().to_string());
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(again.iter())
        .finish();
    let back = format!("{AUTHORIZE_PATH}?{query}");
    let mut login = form_urlencoded::Serializer::new(String::new());
    login.append_pair("return_to", &back);
    if let Some(h) = &r.login_hint {
        login.append_pair("login_hint", h);
    }
    see_other(&format!("{}?{}", gw.pages.login_path, login.finish())).finish()
}

/// `GET /oauth/authorize`.
#[utoipa::path(get, operation_id = "authorize", path = "/oauth/authorize", summary = "OpenID Connect authorization endpoint (code flow, PKCE)", tag = "oidc",
    params(("response_type" = String, Query, description = "`code`"), ("client_id" = String, Query, description = "A registered application"),
           ("redirect_uri" = String, Query, description = "Exactly one the application registered"), ("scope" = String, Query, description = "`openid` and any of `profile email offline_access` and the application's route scopes"),
           ("code_challenge" = String, Query, description = "PKCE S256 (required)"), ("code_challenge_method" = String, Query, description = "`S256`"),
           ("state" = Option<String>, Query, description = "Returned as given"), ("nonce" = Option<String>, Query, description = "Put in the ID token"),
           ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`"), ("max_age" = Option<i64>, Query, description = "Seconds since the sign-in, at most"),
           ("acr_values" = Option<String>, Query, description = "`urn:gatehouse:acr:mfa` asks for a second factor"), ("login_hint" = Option<String>, Query, description = "The username to fill in")),
    responses(
        (status = 303, description = "To the login page (then back here), or back to the application with `code`, `state` and `iss` (RFC 9207), or with `error` (RFC 6749 section 4.1.2.1: `invalid_request`, `unsupported_response_type`, `invalid_scope`, `login_required`, `consent_required`, `access_denied`, `request_not_supported`)"),
        (status = 200, description = "The consent page (a third-party application the user has not allowed these scopes)", content_type = "text/html"),
        (status = 400, description = "An error page, never a redirect: an unknown or inactive client, or a `redirect_uri` it did not register", content_type = "text/html"),
    ))]
pub async fn authorize_get(req: HttpRequest, gw: web::Data<Identity>) -> HttpResponse {
    let raw = req.query_string().as_bytes().to_vec();
    authorize(&req, &gw, &raw, false).await
}

/// `POST /oauth/authorize`: a request sent as a form, or the consent page's
/// answer.
#[utoipa::path(post, operation_id = "authorize_form", path = "/oauth/authorize", summary = "The authorization request as a form, or the consent page's answer", tag = "oidc",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "The same parameters as the GET; from the consent page also `csrf` and `decision` (`allow` or `deny`)"),
    responses(
        (status = 303, description = "As for the GET"),
        (status = 200, description = "The consent page", content_type = "text/html"),
        (status = 400, description = "An error page (not a form, an unknown client, an unregistered `redirect_uri`)", content_type = "text/html"),
        (status = 403, description = "A consent answer that did not come from the consent page", content_type = "text/html"),
    ))]
pub async fn authorize_post(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Bytes,
) -> HttpResponse {
    let form = matches!(
        actix_web::HttpMessage::mime_type(&req),
        Ok(Some(m)) if m.essence_str() == "application/x-www-form-urlencoded"
    );
    if !form || body.len() > 16 * 1024 {
        return gw.pages.error(
            &req,
            StatusCode::BAD_REQUEST,
            "the request must be a form of at most 16 KiB",
        );
    }
    authorize(&req, &gw, &body, true).await
}

async fn authorize(req: &HttpRequest, gw: &Identity, raw: &[u8], posted: bool) -> HttpResponse {
    let p = match parse_params(raw) {
        Ok(p) => p,
        Err(e) => return gw.pages.error(req, StatusCode::BAD_REQUEST, &e),
    };
    let (client, redirect_uri) = match client_and_redirect(gw, &p).await {
        Ok(c) => c,
        Err(r) => return refused(gw, req, r),
    };
    let r = match request(client, redirect_uri, &p) {
        Ok(r) => r,
        Err(e) => return refused(gw, req, e),
    };
    // The consent page's answer, which only that page can send.
    let decision = if posted {
        p.get("decision").map(String::as_str)
    } else {
        None
    };
    if decision.is_some()
        && !gw
            .pages
            .form_is_ours(req, p.get("csrf").map(String::as_str))
    {
        return gw
            .pages
            .error(req, StatusCode::FORBIDDEN, gw.pages.strings.form_expired);
    }
    let session = crate::identity::page::browser_session(gw, req).await;
    let Some(session) = session.filter(|s| session_fits(s, &r)) else {
        if r.prompt.none {
            return to_app(
                gw,
                &r.redirect_uri,
                r.state.as_deref(),
                &[
                    ("error", "login_required"),
                    (
                        "error_description",
                        "the user is not signed in, or not as the request requires",
                    ),
                ],
            );
        }
        return to_login(gw, &p, &r);
    };
    let account = match crate::identity::users_api::active_account(gw, session.user_id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            crate::identity::login_page::end_browser_session(gw, session.id).await;
            return to_login(gw, &p, &r);
        }
        Err(_) => {
            return gw.pages.error(
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                gw.pages.strings.unavailable,
            );
        }
    };
    match decision {
        Some("allow") => {
            if let Err(e) = gw
                .codes
                .remember_consent(account.id, r.client.id, &r.scopes)
                .await
            {
                tracing::error!(error = %e, "storing a consent failed");
                return gw.pages.error(
                    req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    gw.pages.strings.unavailable,
                );
            }
            audit(gw, req, &account, &r, "oauth.consent.granted");
        }
        Some(_) => {
            audit(gw, req, &account, &r, "oauth.consent.denied");
            return to_app(
                gw,
                &r.redirect_uri,
                r.state.as_deref(),
                &[
                    ("error", "access_denied"),
                    ("error_description", "the user did not allow it"),
                ],
            );
        }
        None => {
            if needs_consent(gw, &account, &r).await {
                if r.prompt.none {
                    return to_app(
                        gw,
                        &r.redirect_uri,
                        r.state.as_deref(),
                        &[
                            ("error", "consent_required"),
                            (
                                "error_description",
                                "the user has not allowed this application",
                            ),
                        ],
                    );
                }
                return consent_page(gw, req, &p, &r, &account);
            }
        }
    }
    issue(gw, req, &r, &session, &account).await
}

async fn needs_consent(gw: &Identity, account: &Account, r: &AuthRequest) -> bool {
    if r.client.app.first_party && !r.prompt.consent {
        return false;
    }
    if r.prompt.consent {
        return true;
    }
    match gw.codes.consent(account.id, r.client.id).await {
        Ok(Some(granted)) => !r.scopes.iter().all(|s| granted.contains(s)),
        _ => true,
    }
}

fn audit(
    gw: &Identity,
    req: &HttpRequest,
    account: &Account,
    r: &AuthRequest,
    event: &'static str,
) {
    gw.audit.record(
        Event::new(event, "success")
            .actor(Some(account.id))
            .subject(r.client.client_id.clone())
            .client(client_ip(req).map(|a| a.to_string()))
            .detail(format!("scope: {}", r.scopes.join(" "))),
    );
}

fn consent_page(
    gw: &Identity,
    req: &HttpRequest,
    p: &Params,
    r: &AuthRequest,
    account: &Account,
) -> HttpResponse {
    let pages = &gw.pages;
    let s = pages.strings;
    pages.render(req, StatusCode::OK, s.consent_title, |csrf| {
        html! {
            p { strong { (r.client.name) } " — " (pages.t(s.consent_intro)) }
            ul.scopes {
                @for scope in &r.scopes {
                    li {
                        @match s.scope(scope) {
                            Some(text) => (text),
                            None => { (s.scope_other) " " code { (scope) } },
                        }
                    }
                }
            }
            p { (s.signed_in_as) " " strong { (account.username) } "." }
            form method="post" action=(AUTHORIZE_PATH) {
                (hidden("csrf", csrf))
                @for (k, v) in p.iter().filter(|(k, _)| !FORM_ONLY.contains(&k.as_str())) {
                    (hidden(k, v))
                }
                div.actions {
                    button type="submit" name="decision" value="allow" { (s.allow) }
                    button.secondary type="submit" name="decision" value="deny" { (s.deny) }
                }
            }
        }
    })
}

async fn issue(
    gw: &Identity,
    req: &HttpRequest,
    r: &AuthRequest,
    session: &BrowserSession,
    account: &Account,
) -> HttpResponse {
    let grant = Grant {
        client: r.client.id,
        redirect_uri: r.redirect_uri.clone(),
        code_challenge: r.code_challenge.clone(),
        scope: r.scopes.join(" "),
        nonce: r.nonce.clone(),
        user_id: account.id,
        browser_session: session.id,
        amr: session.amr.clone(),
        auth_time: session.auth_time,
    };
    match gw.codes.issue(&grant).await {
        Ok(code) => {
            audit(gw, req, account, r, "oauth.code.issued");
            to_app(gw, &r.redirect_uri, r.state.as_deref(), &[("code", &code)])
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an authorization code failed");
            to_app(
                gw,
                &r.redirect_uri,
                r.state.as_deref(),
                &[
                    ("error", "temporarily_unavailable"),
                    ("error_description", "try again"),
                ],
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parameters_appear_once() {
        assert!(!parse_params(b"a=1&b=2&c=").unwrap().contains_key("c"));
        assert!(parse_params(b"a=1&a=2").is_err());
    }

    #[test]
    fn prompt_values_combine_as_oidc_says() {
        let p = |s: &str| parse_prompt(Some(&s.to_owned()));
        assert!(p("none").unwrap().none);
        assert!(p("login consent").unwrap().consent);
        assert!(p("none login").is_err());
        assert!(p("select_account").is_err());
    }
}
