//! The hosted login page: `GET /login` (the form, or who is signed in),
//! `POST /login` (the password), `POST /login/mfa` (the second step),
//! `POST /login/logout` (sign out). The same steps as `POST /api/login`
//! ([`sign_in`]): the same limits, lockout, challenge and audit events; one
//! message for any wrong credential. A sign-in starts a new browser session
//! and sends the browser on to `return_to` (a path on this gateway, such as
//! the authorization request that sent it here).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use common::audit::Event;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;

use super::Identity;
use crate::identity::caller::client_ip;
use crate::identity::page::{self, hidden, nothing, see_other};
use crate::identity::sign_in::{self, Code, Failure, Passed};
use crate::identity::users_api::Account;

/// `GET /login` query.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub return_to: Option<String>,
    #[serde(default)]
    pub login_hint: Option<String>,
}

/// Where to go after sign-in, when the page may go there (see
/// [`page::Pages::may_return_to`]); another is ignored.
pub(crate) fn return_to<'a>(gw: &Identity, v: Option<&'a str>) -> Option<&'a str> {
    let live = gw.live.load();
    v.filter(|r| gw.pages.may_return_to(r, |h| live.routes.serves_host(h)))
}

/// What the form shows besides its fields.
#[derive(Default)]
struct FormState<'a> {
    username: &'a str,
    error: Option<String>,
    return_to: Option<&'a str>,
}

fn login_form(
    gw: &Identity,
    req: &HttpRequest,
    status: StatusCode,
    st: FormState<'_>,
) -> HttpResponse {
    let p = &gw.pages;
    let s = p.strings;
    p.render(req, status, &p.t(s.sign_in_title), |csrf| {
        html! {
            p { (p.t(s.sign_in_intro)) }
            @if let Some(e) = &st.error {
                p.error id="form-error" role="alert" { (e) }
            }
            form method="post" action=(p.login_path) {
                (hidden("csrf", csrf))
                @if let Some(r) = st.return_to { (hidden("return_to", r)) }
                label for="username" { (s.username) }
                input type="text" id="username" name="username" value=(st.username)
                    autocomplete="username" autocapitalize="none" spellcheck="false" required
                    autofocus[st.username.is_empty()]
                    aria-describedby=[st.error.as_ref().map(|_| "form-error")];
                label for="password" { (s.password) }
                input type="password" id="password" name="password"
                    autocomplete="current-password" required
                    autofocus[!st.username.is_empty()];
                button type="submit" { (s.sign_in) }
            }
            (provider_buttons(gw, csrf, st.return_to))
        }
    })
}

/// The login form's "Sign in with ..." buttons, one per trusted provider
/// with `login` (their handlers: `provider_pages`), by name.
fn provider_buttons(gw: &Identity, csrf: &str, return_to: Option<&str>) -> Markup {
    let live = gw.live.load();
    let mut options: Vec<(&str, &str)> = live
        .issuers
        .all()
        .filter_map(|i| {
            Some((
                i.config.issuer.as_str(),
                i.config.login.as_ref()?.display_name.as_str(),
            ))
        })
        .collect();
    if options.is_empty() {
        return nothing();
    }
    options.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    let s = gw.pages.strings;
    let action = format!("{}/provider", gw.pages.login_path);
    html! {
        section.providers aria-labelledby="providers-title" {
            h2 id="providers-title" { (s.providers_title) }
            @for (issuer, name) in &options {
                form method="post" action=(action) {
                    (hidden("csrf", csrf))
                    (hidden("provider", issuer))
                    @if let Some(r) = return_to { (hidden("return_to", r)) }
                    button type="submit" { (s.sign_in_with) " " (name) }
                }
            }
        }
    }
}

fn code_form(
    gw: &Identity,
    req: &HttpRequest,
    status: StatusCode,
    challenge: &str,
    return_to: Option<&str>,
    error: Option<&str>,
) -> HttpResponse {
    let p = &gw.pages;
    let s = p.strings;
    p.render(req, status, s.second_step_title, |csrf| {
        html! {
            p { (s.second_step_intro) }
            @if let Some(e) = error {
                p.error id="form-error" role="alert" { (e) }
            }
            form method="post" action=(format!("{}/mfa", p.login_path)) {
                (hidden("csrf", csrf))
                (hidden("challenge", challenge))
                @if let Some(r) = return_to { (hidden("return_to", r)) }
                label for="code" { (s.code) span.hint { (s.code_hint) } }
                input type="text" id="code" name="code" inputmode="numeric"
                    autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" autofocus
                    aria-describedby=[error.map(|_| "form-error")];
                label for="recovery_code" { (s.recovery_code) span.hint { (s.recovery_hint) } }
                input type="text" id="recovery_code" name="recovery_code" autocomplete="off"
                    spellcheck="false";
                button type="submit" { (s.verify) }
            }
        }
    })
}

fn signed_in_page(gw: &Identity, req: &HttpRequest, account: &Account) -> HttpResponse {
    let p = &gw.pages;
    let s = p.strings;
    p.render(req, StatusCode::OK, s.signed_in_title, |csrf| {
        html! {
            p { (s.signed_in_as) " " strong { (account.username) } "." }
            (sign_out_form(&p.login_path, csrf, s.sign_out))
        }
    })
}

fn sign_out_form(login_path: &str, csrf: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(format!("{login_path}/logout")) {
            (hidden("csrf", csrf))
            button type="submit" { (label) }
        }
    }
}

/// `GET /login`.
#[utoipa::path(get, operation_id = "login_page", path = "/login", summary = "The hosted login page", tag = "sign-in",
    params(("return_to" = Option<String>, Query, description = "Where to go on to after signing in: a path on this gateway, or an http(s) URL on its own host, a host of `login.return_hosts` or a route's `host` (another is ignored)"),
           ("login_hint" = Option<String>, Query, description = "The username to fill in")),
    responses(
        (status = 200, description = "The sign-in form (or, signed in and with no `return_to`, who is signed in, with a sign-out button); sets the anti-CSRF cookie", content_type = "text/html"),
    ))]
pub async fn show(
    req: HttpRequest,
    gw: web::Data<Identity>,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let to = return_to(&gw, q.return_to.as_deref());
    if to.is_none()
        && let Some(account) = current_account(&gw, &req).await
    {
        return signed_in_page(&gw, &req, &account);
    }
    let hint = q.login_hint.as_deref().unwrap_or("");
    let hint = if hint.len() <= 64 { hint } else { "" };
    login_form(
        &gw,
        &req,
        StatusCode::OK,
        FormState {
            username: hint,
            error: None,
            return_to: to,
        },
    )
}

/// The account of the request's live browser session, if any.
async fn current_account(gw: &Identity, req: &HttpRequest) -> Option<Account> {
    let session = page::browser_session(gw, req).await?;
    crate::identity::users_api::active_account(gw, session.user_id)
        .await
        .ok()
        .flatten()
}

/// `POST /login` form.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub return_to: Option<String>,
}

/// The page of a step that did not sign in.
fn refused_page(
    gw: &Identity,
    req: &HttpRequest,
    failure: Failure,
    username: &str,
    to: Option<&str>,
) -> HttpResponse {
    let s = gw.pages.strings;
    let (status, error, retry) = match failure {
        Failure::Wrong | Failure::Malformed => (
            StatusCode::UNAUTHORIZED,
            s.wrong_credentials.to_owned(),
            None,
        ),
        Failure::Locked(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} {}.", s.locked, s.wait(secs)),
            Some(secs),
        ),
        Failure::RateLimited(d) => {
            let secs = match d {
                crate::traffic::ratelimit::Decision::Deny { retry_after, .. } => {
                    retry_after.as_secs().max(1)
                }
                _ => 1,
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!("{} {}.", s.rate_limited, s.wait(secs)),
                Some(secs),
            )
        }
        Failure::BadChallenge(_) => (StatusCode::UNAUTHORIZED, s.start_again.to_owned(), None),
        Failure::WrongCode => (StatusCode::UNAUTHORIZED, s.wrong_code.to_owned(), None),
        Failure::Unavailable | Failure::Dependency(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            s.unavailable.to_owned(),
            None,
        ),
        Failure::Store(e) => {
            tracing::error!(error = %e, "the login page's store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                s.unavailable.to_owned(),
                None,
            )
        }
    };
    let mut res = login_form(
        gw,
        req,
        status,
        FormState {
            username,
            error: Some(error),
            return_to: to,
        },
    );
    if let Some(secs) = retry
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// A form that did not come from our page (or whose token expired).
pub(crate) fn forged(gw: &Identity, req: &HttpRequest, to: Option<&str>) -> HttpResponse {
    gw.audit.record(
        Event::new("login.form_refused", "refused")
            .client(client_ip(req).map(|a| a.to_string()))
            .detail("a login form without this browser's anti-CSRF token, or from another site"),
    );
    login_form(
        gw,
        req,
        StatusCode::FORBIDDEN,
        FormState {
            username: "",
            error: Some(gw.pages.strings.form_expired.to_owned()),
            return_to: to,
        },
    )
}

/// `POST /login`.
#[utoipa::path(post, operation_id = "login_page_password", path = "/login", summary = "Sign in on the page: the password", tag = "sign-in",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "`csrf` (the page's token), `username`, `password`, optional `return_to`"),
    responses(
        (status = 303, description = "Signed in: a new browser session cookie, and on to `return_to` (or `/login`)"),
        (status = 200, description = "The password was right and the account has a second factor: the second step's form", content_type = "text/html"),
        (status = 401, description = "The form again: the username or password is not right (one message whatever was wrong)", content_type = "text/html"),
        (status = 403, description = "The form did not come from this page (anti-CSRF token, `Origin`, `Sec-Fetch-Site`)", content_type = "text/html"),
        (status = 429, description = "Too many attempts for this account or address: when to retry (`Retry-After`)", content_type = "text/html"),
        (status = 503, description = "The users service is unavailable", content_type = "text/html"),
    ))]
pub async fn password(
    req: HttpRequest,
    gw: web::Data<Identity>,
    form: web::Form<PasswordForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let to = return_to(&gw, form.return_to.as_deref());
    if !gw.pages.form_is_ours(&req, form.csrf.as_deref()) {
        return forged(&gw, &req, to);
    }
    let Some(password) = form.password.as_ref() else {
        return refused_page(&gw, &req, Failure::Wrong, &form.username, to);
    };
    let ip = client_ip(&req).map(|a| a.to_string()).unwrap_or_default();
    match sign_in::password(&gw, "/login", &ip, &form.username, password).await {
        Ok(Passed::Done(account, amr)) => signed_in(&gw, &req, &account, amr, to).await,
        Ok(Passed::SecondFactor { challenge, .. }) => {
            code_form(&gw, &req, StatusCode::OK, &challenge, to, None)
        }
        Err(f) => refused_page(&gw, &req, f, &form.username, to),
    }
}

/// `POST /login/mfa` form.
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub challenge: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
    #[serde(default)]
    pub return_to: Option<String>,
}

/// `POST /login/mfa`.
#[utoipa::path(post, operation_id = "login_page_second_step", path = "/login/mfa", summary = "Sign in on the page: the second step", tag = "sign-in",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "`csrf`, `challenge` (from the first step's form), `code` or `recovery_code`, optional `return_to`"),
    responses(
        (status = 303, description = "Signed in with a second factor; on to `return_to`"),
        (status = 401, description = "A wrong or used code (the form again), or a challenge that is no longer valid (sign in again)", content_type = "text/html"),
        (status = 403, description = "The form did not come from this page", content_type = "text/html"),
        (status = 422, description = "Not exactly one of `code` and `recovery_code`", content_type = "text/html"),
        (status = 429, description = "Too many attempts; when to retry", content_type = "text/html"),
    ))]
pub async fn second_step(
    req: HttpRequest,
    gw: web::Data<Identity>,
    form: web::Form<CodeForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let to = return_to(&gw, form.return_to.as_deref());
    if !gw.pages.form_is_ours(&req, form.csrf.as_deref()) {
        return forged(&gw, &req, to);
    }
    let filled = |v: Option<String>| v.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    let code = match (filled(form.code), filled(form.recovery_code)) {
        (Some(c), None) => Code::Totp(c),
        (None, Some(c)) => Code::Recovery(c),
        _ => {
            let s = gw.pages.strings;
            return code_form(
                &gw,
                &req,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.challenge,
                to,
                Some(s.one_code),
            );
        }
    };
    let ip = client_ip(&req).map(|a| a.to_string()).unwrap_or_default();
    let route = "/login/mfa";
    match sign_in::second_factor(&gw, route, &ip, &form.challenge, code).await {
        Ok((account, amr)) => signed_in(&gw, &req, &account, amr, to).await,
        Err(Failure::WrongCode) => {
            let s = gw.pages.strings;
            code_form(
                &gw,
                &req,
                StatusCode::UNAUTHORIZED,
                &form.challenge,
                to,
                Some(s.wrong_code),
            )
        }
        Err(f) => refused_page(&gw, &req, f, "", to),
    }
}

/// A sign-in: the old session (if any) ends, a new one starts (never the
/// id the browser came with), and the browser goes on.
pub(crate) async fn signed_in(
    gw: &Identity,
    req: &HttpRequest,
    account: &Account,
    amr: &[&str],
    to: Option<&str>,
) -> HttpResponse {
    if let Some(s) = page::browser_session(gw, req).await {
        end_browser_session(gw, s.id).await;
    }
    let ip = client_ip(req).map(|a| a.to_string()).unwrap_or_default();
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match gw.browser.start(account.id, amr, &ip, agent).await {
        Ok((session, value)) => {
            gw.audit.record(
                Event::new("browser_session.started", "success")
                    .actor(Some(account.id))
                    .subject(session.id.to_string())
                    .client(Some(ip)),
            );
            let mut res = see_other(to.unwrap_or(&gw.pages.login_path));
            res.cookie(gw.pages.session_cookie(value, gw.browser.absolute_secs()));
            res.finish()
        }
        Err(e) => refused_page(gw, req, Failure::Store(e), &account.username, to),
    }
}

/// End a browser session and what ends with it (the applications' sessions
/// issued through it without `offline_access`), here and on every replica
/// before this returns. Whether it all ended.
pub(crate) async fn end_browser_session(gw: &Identity, id: uuid::Uuid) -> bool {
    let mut ok = gw.browser.end(id).await.is_ok();
    let mut denied = Vec::new();
    let until = crate::clock::unix_secs() + gw.browser.absolute_secs();
    match gw.sessions.revoke_sids(&[id.to_string()], until).await {
        Ok(d) => denied.extend(d),
        Err(_) => ok = false,
    }
    match gw.sessions.of_browser_session(id).await {
        Ok(families) => {
            for f in families {
                match gw.sessions.revoke_family(f).await {
                    Ok(d) => denied.push(d),
                    Err(_) => ok = false,
                }
            }
        }
        Err(_) => ok = false,
    }
    gw.revocations.announce(&denied).await;
    ok
}

/// `POST /login/logout` form.
#[derive(Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /login/logout`: sign out of this browser.
#[utoipa::path(post, operation_id = "login_page_sign_out", path = "/login/logout", summary = "Sign out of this browser", tag = "sign-in",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "`csrf`"),
    responses(
        (status = 200, description = "Signed out: the browser session and the applications' sessions issued through it (without `offline_access`) end on every replica", content_type = "text/html"),
        (status = 403, description = "The form did not come from this page", content_type = "text/html"),
    ))]
pub async fn sign_out(
    req: HttpRequest,
    gw: web::Data<Identity>,
    form: web::Form<SignOutForm>,
) -> HttpResponse {
    if !gw.pages.form_is_ours(&req, form.csrf.as_deref()) {
        return forged(&gw, &req, None);
    }
    sign_out_now(&gw, &req, None).await
}

/// Sign the request's browser out, then show that it is (or go to `then`,
/// a destination already checked).
pub(crate) async fn sign_out_now(
    gw: &Identity,
    req: &HttpRequest,
    then: Option<String>,
) -> HttpResponse {
    let mut user = None;
    if let Some(s) = page::browser_session(gw, req).await {
        user = Some(s.user_id);
        if !end_browser_session(gw, s.id).await {
            return gw.pages.error(
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                gw.pages.strings.unavailable,
            );
        }
    }
    gw.audit.record(
        Event::new("browser_session.ended", "success")
            .actor(user)
            .client(client_ip(req).map(|a| a.to_string())),
    );
    let removal = gw.pages.session_removal();
    if let Some(to) = then {
        let mut res = see_other(&to);
        res.cookie(removal);
        return res.finish();
    }
    let p = &gw.pages;
    let s = p.strings;
    let mut res = p.render(req, StatusCode::OK, s.signed_out_title, |_| {
        html! {
            p { (p.t(s.signed_out)) }
            p { a href=(p.login_path) { (s.sign_in) } }
        }
    });
    let _ = res.add_cookie(&removal);
    res
}

/// `GET /login/style.css`.
pub async fn style() -> HttpResponse {
    page::style().await
}
