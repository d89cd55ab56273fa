//! "Sign in with <provider>" on the login page: `POST {login}/provider`
//! sends the browser to a trusted provider's authorization endpoint, and
//! `GET {login}/callback` takes its answer, verifies it (see
//! [`crate::identity::provider_login`]), links the account exactly as that
//! provider's bearer tokens are linked (one id space, roles from the
//! mapping, a deactivated account refused) and starts the browser session,
//! whose methods are the provider's `amr`. Whatever goes wrong (the
//! provider down, a refusal, an answer that does not verify) is a page that
//! says so and leads back to the sign-in, never a 500.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use common::audit::Event;
use maud::html;
use serde::Deserialize;

use super::Identity;
use crate::identity::caller::client_ip;
use crate::identity::issuers::{ExternalClaims, ExternalError, Issuer};
use crate::identity::page::see_other;
use crate::identity::provider_login::{self, Endpoints, Flow, ProviderLogin, TokenAnswer};
use crate::identity::users_api::LinkError;
use crate::live::Live;

/// `POST {login}/provider` form.
#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub return_to: Option<String>,
}

/// The redirect URI registered at every provider.
fn callback_url(gw: &Identity) -> String {
    format!("{}{}/callback", gw.public_url, gw.pages.login_path)
}

/// A page that ends a sign-in through a provider, with the way back to
/// the sign-in.
fn ended(gw: &Identity, req: &HttpRequest, status: StatusCode, detail: &str) -> HttpResponse {
    let p = &gw.pages;
    let s = p.strings;
    p.render(req, status, s.provider_failed_title, |_| {
        html! {
            p.error role="alert" { (detail) }
            p { a href=(p.login_path) { (s.back_to_sign_in) } }
        }
    })
}

/// What went wrong, for the audit trail, and the page for the browser.
struct Stop {
    status: StatusCode,
    detail: String,
    why: String,
}

impl Stop {
    fn new(status: StatusCode, detail: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            why: why.into(),
        }
    }

    /// The provider cannot be reached or answered unusably.
    fn down(gw: &Identity, name: &str, why: impl Into<String>) -> Self {
        let s = gw.pages.strings;
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            s.provider_down.replace("{provider}", name),
            why,
        )
    }

    /// Start again from the login page.
    fn again(gw: &Identity, why: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            gw.pages.strings.provider_start_again,
            why,
        )
    }

    fn page(self, gw: &Identity, req: &HttpRequest, issuer: Option<&str>) -> HttpResponse {
        let outcome = if self.status.is_server_error() {
            "failure"
        } else {
            "refused"
        };
        tracing::info!(issuer, reason = %self.why, "a sign-in through an identity provider did not complete");
        gw.audit.record(
            Event::new("login.provider_refused", outcome)
                .subject(issuer.unwrap_or_default().to_owned())
                .client(client_ip(req).map(|a| a.to_string()))
                .detail(self.why),
        );
        ended(gw, req, self.status, &self.detail)
    }
}

/// The configured provider `issuer` with its login entry.
fn provider<'l>(live: &'l Live, issuer: &str) -> Option<(&'l Issuer, &'l ProviderLogin)> {
    let i = live.issuers.get(issuer)?;
    Some((i, i.config.login.as_ref()?))
}

/// The provider's endpoints, from its discovery document.
async fn endpoints(gw: &Identity, live: &Live, issuer: &Issuer) -> Result<Endpoints, Stop> {
    let name = issuer
        .config
        .login
        .as_ref()
        .map_or("", |l| l.display_name.as_str());
    let doc = issuer
        .document(live.issuers.fetcher())
        .await
        .map_err(|e| Stop::down(gw, name, e))?;
    Endpoints::of(&doc).map_err(|e| Stop::down(gw, name, e))
}

/// `POST {login}/provider`.
#[utoipa::path(post, operation_id = "login_page_provider", path = "/login/provider", summary = "Sign in through a trusted identity provider", tag = "sign-in",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "`csrf` (the page's token), `provider` (the issuer of a `trusted_issuers` entry with `login`), optional `return_to`"),
    responses(
        (status = 303, description = "To the provider's authorization endpoint (code flow with PKCE S256, `state` and `nonce`); sets the cookie that binds the sign-in to this browser"),
        (status = 400, description = "No such provider offers sign-in", content_type = "text/html"),
        (status = 403, description = "The form did not come from this page", content_type = "text/html"),
        (status = 503, description = "The provider's discovery document cannot be had, or the gateway's store failed", content_type = "text/html"),
    ))]
pub async fn start(
    req: HttpRequest,
    gw: web::Data<Identity>,
    form: web::Form<StartForm>,
) -> HttpResponse {
    let to = crate::identity::login_page::return_to(&gw, form.return_to.as_deref());
    if !gw.pages.form_is_ours(&req, form.csrf.as_deref()) {
        return crate::identity::login_page::forged(&gw, &req, to);
    }
    let live = gw.live.load_full();
    let Some((issuer, login)) = provider(&live, &form.provider) else {
        let why = "no provider with `login` has this issuer";
        return Stop::new(
            StatusCode::BAD_REQUEST,
            gw.pages.strings.provider_unknown,
            why,
        )
        .page(&gw, &req, None);
    };
    let iss = issuer.config.issuer.as_str();
    let endpoints = match endpoints(&gw, &live, issuer).await {
        Ok(e) => e,
        Err(stop) => return stop.page(&gw, &req, Some(iss)),
    };
    let (state, flow) = match gw.provider_flows.start(iss, to).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot store a sign-in through a provider");
            let s = gw.pages.strings;
            return ended(&gw, &req, StatusCode::SERVICE_UNAVAILABLE, s.unavailable);
        }
    };
    match provider_login::authorization_url(&endpoints, login, &callback_url(&gw), &state, &flow) {
        Ok(url) => {
            let mut res = see_other(&url);
            res.cookie(gw.pages.flow_cookie(state));
            res.finish()
        }
        Err(e) => Stop::down(&gw, &login.display_name, e).page(&gw, &req, Some(iss)),
    }
}

/// `GET {login}/callback` query: the authorization response (RFC 6749
/// section 4.1.2, RFC 9207).
#[derive(Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET {login}/callback`.
#[utoipa::path(get, operation_id = "login_page_provider_callback", path = "/login/callback", summary = "A trusted identity provider's answer to a sign-in", tag = "sign-in",
    params(("code" = Option<String>, Query, description = "The authorization code"),
           ("state" = Option<String>, Query, description = "The sign-in's state; must be this browser's"),
           ("iss" = Option<String>, Query, description = "The provider's issuer (RFC 9207): must be the one the sign-in went to, and is required when its discovery document says it sends it"),
           ("error" = Option<String>, Query, description = "The provider's OAuth error code")),
    responses(
        (status = 303, description = "Signed in: a new browser session cookie, and on to `return_to` (or the login page)"),
        (status = 400, description = "Not the answer to a sign-in this browser started in the last ten minutes, a used one, or one from another issuer: start again", content_type = "text/html"),
        (status = 403, description = "Refused at the provider, or the linked account is deactivated", content_type = "text/html"),
        (status = 502, description = "The provider's token endpoint refused the code, or its ID token does not verify", content_type = "text/html"),
        (status = 503, description = "The provider or the users service cannot be reached", content_type = "text/html"),
    ))]
pub async fn callback(
    req: HttpRequest,
    gw: web::Data<Identity>,
    q: web::Query<Answer>,
) -> HttpResponse {
    let mut res = finish(&gw, &req, q.into_inner()).await;
    let _ = res.add_cookie(&gw.pages.flow_removal());
    res
}

async fn finish(gw: &Identity, req: &HttpRequest, q: Answer) -> HttpResponse {
    let state = q.state.as_deref().unwrap_or("");
    let bound = req
        .cookie(gw.pages.flow_cookie_name())
        .is_some_and(|c| !state.is_empty() && crate::identity::opaque::same(c.value(), state));
    if !bound {
        let why =
            "an answer without this browser's sign-in cookie (another browser's, or a forged one)";
        return Stop::again(gw, why).page(gw, req, None);
    }
    let flow = match gw.provider_flows.take(state).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Stop::again(gw, "no pending sign-in with this state (used or expired)")
                .page(gw, req, None);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read a sign-in through a provider");
            let s = gw.pages.strings;
            return ended(gw, req, StatusCode::SERVICE_UNAVAILABLE, s.unavailable);
        }
    };
    let live = gw.live.load_full();
    let Some((issuer, login)) = provider(&live, &flow.issuer) else {
        return Stop::again(gw, "the provider no longer offers sign-in").page(
            gw,
            req,
            Some(&flow.issuer),
        );
    };
    match verified(gw, &live, issuer, login, &flow, &q).await {
        Ok(ext) => signed_in(gw, req, &ext, flow.return_to.as_deref()).await,
        Err(stop) => stop.page(gw, req, Some(&flow.issuer)),
    }
}

/// The callback checked, the code exchanged, the ID token verified.
async fn verified(
    gw: &Identity,
    live: &Arc<Live>,
    issuer: &Issuer,
    login: &ProviderLogin,
    flow: &Flow,
    q: &Answer,
) -> Result<ExternalClaims, Stop> {
    let s = gw.pages.strings;
    let name = login.display_name.as_str();
    let endpoints = endpoints(gw, live, issuer).await?;
    // RFC 9207: the answer says who sent it; a provider that promises to
    // say must.
    match q.iss.as_deref() {
        Some(iss) if iss != flow.issuer => {
            let iss: String = iss.chars().take(200).collect();
            return Err(Stop::again(
                gw,
                format!("an answer from `{iss}` to a sign-in sent to another issuer (mix-up)"),
            ));
        }
        None if endpoints.sends_iss => {
            return Err(Stop::again(
                gw,
                "an answer without `iss` from a provider that sends it",
            ));
        }
        _ => {}
    }
    if let Some(error) = q.error.as_deref() {
        let error: String = error.chars().take(64).collect();
        return Err(Stop::new(
            StatusCode::FORBIDDEN,
            s.provider_refused.replace("{provider}", name),
            format!("the provider answered `{error}`"),
        ));
    }
    let code = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| Stop::again(gw, "an answer without a code or an error"))?;
    let id_token = exchange(gw, login, &endpoints, code, flow).await?;
    live.issuers
        .verify_id_token(issuer, &id_token, &login.client_id, &flow.nonce)
        .await
        .map_err(|e| match e {
            ExternalError::KeysUnavailable(why) => Stop::down(gw, name, why),
            e => Stop::new(
                StatusCode::BAD_GATEWAY,
                s.provider_unverified.replace("{provider}", name),
                format!("the ID token does not verify: {e}"),
            ),
        })
}

/// The code for an ID token at the provider's token endpoint.
async fn exchange(
    gw: &Identity,
    login: &ProviderLogin,
    endpoints: &Endpoints,
    code: &str,
    flow: &Flow,
) -> Result<String, Stop> {
    let s = gw.pages.strings;
    let name = login.display_name.as_str();
    let path = login.client_secret_file.clone();
    let secret = web::block(move || std::fs::read_to_string(&path))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            tracing::error!(file = %login.client_secret_file.display(), error = %e, "cannot read the provider's client secret");
            Stop::down(gw, name, format!("the client secret cannot be read: {e}"))
        })?;
    let body = provider_login::token_request(code, &callback_url(gw), &flow.verifier);
    let auth = provider_login::basic_credentials(&login.client_id, &secret);
    let timeout = Duration::from_millis(login.timeout_ms);
    let (status, answer) = crate::traffic::upstream::client::post_provider_form(
        &endpoints.token,
        body,
        &auth,
        timeout,
    )
    .await
    .map_err(|e| Stop::down(gw, name, e))?;
    provider_login::id_token_of(status, &answer).map_err(|e| match e {
        TokenAnswer::Refused(code) => Stop::new(
            StatusCode::BAD_GATEWAY,
            s.provider_refused.replace("{provider}", name),
            format!("the token endpoint answered `{code}`"),
        ),
        TokenAnswer::Unusable(why) if status >= 500 => Stop::down(gw, name, why),
        TokenAnswer::Unusable(why) => Stop::new(
            StatusCode::BAD_GATEWAY,
            s.provider_unverified.replace("{provider}", name),
            format!("the token endpoint's answer: {why}"),
        ),
    })
}

/// The linked account signed in: a new browser session with the
/// provider's methods.
async fn signed_in(
    gw: &Identity,
    req: &HttpRequest,
    ext: &ExternalClaims,
    return_to: Option<&str>,
) -> HttpResponse {
    let s = gw.pages.strings;
    let account = match crate::identity::users_api::link(gw, ext).await {
        Ok(a) => a,
        Err(LinkError::Inactive) => {
            return Stop::new(
                StatusCode::FORBIDDEN,
                s.account_deactivated,
                format!("the account linked to `{}` is deactivated", ext.subject),
            )
            .page(gw, req, Some(&ext.issuer));
        }
        Err(LinkError::Unavailable(why)) => {
            tracing::warn!(issuer = %ext.issuer, reason = %why, "cannot link an identity provider's user");
            return ended(gw, req, StatusCode::SERVICE_UNAVAILABLE, s.unavailable);
        }
    };
    let ip = client_ip(req).map(|a| a.to_string());
    gw.metrics.login("success");
    gw.audit.record(
        Event::new("login.success", "success")
            .actor(Some(account.id))
            .subject(account.username.clone())
            .client(ip)
            .detail(format!("through the identity provider `{}`", ext.issuer)),
    );
    let methods = provider_login::methods_of(&ext.all);
    let amr: Vec<&str> = methods.iter().map(String::as_str).collect();
    let to = crate::identity::login_page::return_to(gw, return_to);
    crate::identity::login_page::signed_in(gw, req, &account, &amr, to).await
}
