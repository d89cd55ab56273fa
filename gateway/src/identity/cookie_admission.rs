//! Admission by browser session: a route with `session: true` admits the
//! login page's cookie as it admits a bearer token.
//!
//! The cookie names a row of [`crate::identity::browser`]; the caller it
//! stands for (the account's roles and username from the users service,
//! the sign-in's `amr` and `auth_time`) is remembered here for at most
//! [`REMEMBERED_SECS`], so a request with a known cookie costs a cache
//! probe and the deny-list look a bearer token costs. What ends a session
//! takes effect at once anyway: sign-out and account changes put
//! `sid:<session id>` on the deny list every replica reads (the cached
//! caller carries that id as its `sid`), a user cutoff refuses sessions
//! started before it, and the absolute and idle ends are checked on every
//! request. Each refill reads the row again, which slides the idle end.
//!
//! Unsafe methods need proof they come from this site ([`same_site`]);
//! a browser's navigation without a session goes to the login page and
//! comes back to the URL it asked for ([`login_redirect`]).

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder};

use super::Identity;
use crate::identity::caller::{Caller, Refusal, caller_of};
use crate::identity::tokens::AccessClaims;
use crate::live::Live;

/// How long a session's caller is remembered before its row (and the
/// account's roles) are read again.
pub const REMEMBERED_SECS: u64 = 30;

/// The header a client that is not a browser (it sends neither
/// `Sec-Fetch-Site` nor `Origin`) adds to an unsafe request with a
/// session cookie: no other site can make a browser send it without the
/// gateway's consent (it is not CORS-safelisted).
pub const CSRF_HEADER: &str = "x-gatehouse-csrf";

/// A session's caller, as remembered.
#[derive(Debug)]
pub struct Remembered {
    claims: Arc<AccessClaims>,
    /// Unix seconds: the session's absolute end, and its idle end as of
    /// the last read of its row.
    expires: i64,
    idle_end: i64,
}

/// The cache of sessions' callers, by cookie value.
pub type SessionCallers = moka::future::Cache<String, Arc<Remembered>>;

pub fn session_callers() -> SessionCallers {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(std::time::Duration::from_secs(REMEMBERED_SECS))
        .build()
}

/// Whether a request carries a bearer token (which then decides alone:
/// a session cookie beside it is not looked at).
pub fn has_bearer(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
}

/// Who is calling, by the request's session cookie.
pub async fn identify(gw: &Identity, live: &Live, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let value = gw
        .pages
        .session_in(headers)
        .ok_or(Refusal::SignInRequired)?;
    let now = crate::clock::unix_secs();
    let remembered = match gw.session_callers.get(value).await {
        Some(r) if r.idle_end > now => r,
        stale => {
            if stale.is_some() {
                gw.session_callers.invalidate(value).await;
            }
            Box::pin(
                gw.session_callers
                    .try_get_with(value.to_owned(), load(gw, live, value)),
            )
            .await
            .map_err(|e| (*e).clone())?
        }
    };
    gw.metrics.token_verification(true);
    if remembered.expires <= now {
        return Err(Refusal::SignInRequired);
    }
    caller_of(remembered.claims.clone(), gw.sessions.deny_list()).map_err(|r| match r {
        // An ended session is no session: a browser signs in again.
        Refusal::Revoked => Refusal::SignInRequired,
        other => other,
    })
}

/// Read a session's row and its account.
async fn load(gw: &Identity, live: &Live, value: &str) -> Result<Arc<Remembered>, Refusal> {
    let session = match gw.browser.find(value).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Refusal::SignInRequired),
        Err(e) => {
            tracing::error!(error = %e, "reading a browser session failed");
            return Err(Refusal::AccountUnavailable);
        }
    };
    let account = match crate::identity::users_api::active_account(gw, session.user_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(Refusal::AccountInactive),
        Err(_) => return Err(Refusal::AccountUnavailable),
    };
    let auth_time = session.auth_time.timestamp();
    let expires = session.expires_at.timestamp();
    let claims = AccessClaims {
        iss: live.tokens.issuer().to_owned(),
        aud: String::new(),
        sub: account.id.to_string(),
        exp: expires,
        iat: auth_time,
        nbf: auth_time,
        // No token id: what ends the session is its `sid`.
        jti: String::new(),
        sid: session.id.to_string(),
        scope: None,
        client_id: None,
        azp: None,
        acr: Some(crate::identity::tokens::acr_of(&session.amr).to_owned()),
        roles: account.roles,
        username: account.username,
        amr: session.amr,
        auth_time: Some(auth_time),
        extra: Default::default(),
    };
    Ok(Arc::new(Remembered {
        claims: Arc::new(claims),
        expires,
        idle_end: (session.last_seen_at + gw.browser.idle()).timestamp(),
    }))
}

/// Whether an unsafe request that would be admitted by its session cookie
/// may be: the browser says it comes from this origin (`Sec-Fetch-Site`,
/// `Origin` with the request's host), or, from a client that says neither
/// (not a browser), it sends [`CSRF_HEADER`]. Safe methods always may,
/// except a WebSocket handshake (a `GET` another site's page can open with
/// the cookie: cross-site WebSocket hijacking).
pub fn same_site(method: &Method, headers: &HeaderMap, host: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !headers.contains_key(header::UPGRADE)
    {
        return true;
    }
    match crate::identity::page::not_cross_site(headers, host) {
        Some(ours) => ours,
        None => headers.contains_key(CSRF_HEADER),
    }
}

/// A browser's navigation: `GET` or `HEAD` that accepts HTML (what a
/// click, a typed URL or a redirect sends). Anything else gets the 401.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// The login page's URL that comes back to `return_to` (a path on this
/// host, or, from `/auth/verify`, an absolute URL the page checks).
pub fn login_url(gw: &Identity, base: &str, return_to: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    format!("{base}{}?{query}", gw.pages.login_path)
}

/// 303 to the login page, coming back to `return_to`; never cached.
pub fn login_redirect(location: &str) -> HttpResponse {
    let mut res = HttpResponseBuilder::new(StatusCode::SEE_OTHER);
    match HeaderValue::from_str(location) {
        Ok(v) => res.insert_header((header::LOCATION, v)),
        Err(_) => return Refusal::SignInRequired.to_response(),
    };
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish()
}

/// Phase: admission by cookie, for a rule that admits a session and a
/// request without a bearer token. The same-site check comes first, so a
/// cross-site post is refused whether or not the browser sent the cookie.
pub async fn admit(
    gw: &Identity,
    live: &Live,
    method: &Method,
    headers: &HeaderMap,
    host: &str,
) -> Result<Caller, Refusal> {
    if !same_site(method, headers, host) {
        return Err(Refusal::CrossSite);
    }
    identify(gw, live, headers).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests_support::headers;

    #[test]
    fn unsafe_requests_need_the_browser_to_say_they_are_this_sites() {
        let host = "app.example:8080";
        let post = Method::POST;
        let ok = |h: &[(&str, &str)]| same_site(&post, &headers(h), host);
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("origin", "https://app.example:8080")]));
        assert!(ok(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://APP.example:8080")
        ]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[("origin", "https://app.example:8081")]));
        assert!(!ok(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://evil.example")
        ]));
        assert!(!ok(&[]), "a client that says nothing sends the header");
        assert!(ok(&[(CSRF_HEADER, "1")]));
        assert!(!ok(&[(CSRF_HEADER, "1"), ("sec-fetch-site", "cross-site")]));
        for safe in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(same_site(
                &safe,
                &headers(&[("sec-fetch-site", "cross-site")]),
                host
            ));
        }
        assert!(!same_site(
            &Method::GET,
            &headers(&[("upgrade", "websocket"), ("origin", "https://evil.example")]),
            host
        ));
        assert!(same_site(
            &Method::GET,
            &headers(&[
                ("upgrade", "websocket"),
                ("origin", "http://app.example:8080")
            ]),
            host
        ));
        for unsafe_method in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!same_site(&unsafe_method, &headers(&[]), host));
        }
    }

    #[test]
    fn only_html_gets_and_heads_are_navigations() {
        let html = headers(&[("accept", "text/html,application/xhtml+xml;q=0.9")]);
        assert!(is_navigation(&Method::GET, &html));
        assert!(is_navigation(&Method::HEAD, &html));
        assert!(!is_navigation(&Method::POST, &html));
        assert!(!is_navigation(
            &Method::GET,
            &headers(&[("accept", "application/json")])
        ));
        assert!(!is_navigation(&Method::GET, &headers(&[])));
    }
}
