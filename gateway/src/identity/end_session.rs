//! `GET`/`POST /oauth/logout`: OpenID Connect RP-Initiated Logout 1.0.
//! An application sends the browser here to end the gatehouse session.
//! `post_logout_redirect_uri` must be one the application registered
//! (named by `client_id` or by the `aud` of `id_token_hint`, which must be
//! an ID token this gateway issued); anything else is an error page, never
//! a redirect. With a hint naming this browser's session, the session ends
//! at once; otherwise the user is asked first (a form only this page can
//! post), so another site cannot sign anyone out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;

use super::Identity;
use crate::identity::apps;
use crate::identity::authorize::parse_params;
use crate::identity::login_page::sign_out_now;
use crate::identity::page::hidden;

pub const END_SESSION_PATH: &str = "/oauth/logout";

/// A checked end-session request: where to go afterwards, and whether
/// the hint shows the application held this session's ID token.
struct EndSession {
    destination: Option<String>,
    hinted_sid: Option<String>,
}

async fn check(
    gw: &Identity,
    p: &std::collections::BTreeMap<String, String>,
) -> Result<EndSession, String> {
    let hint = match p.get("id_token_hint") {
        Some(h) => Some(
            gw.live
                .load()
                .tokens
                .id_token_hint(h)
                .ok_or("id_token_hint is not an ID token this gateway issued")?,
        ),
        None => None,
    };
    let hint_aud = hint.as_ref().and_then(|c| match c.get("aud") {
        Some(serde_json::Value::String(a)) => Some(a.clone()),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    });
    let client_id = match (p.get("client_id"), hint_aud) {
        (Some(c), Some(a)) if *c != a => {
            return Err("client_id is not the audience of id_token_hint".into());
        }
        (Some(c), _) => Some(c.clone()),
        (None, a) => a,
    };
    let destination = match p.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let id = client_id
                .as_deref()
                .ok_or("post_logout_redirect_uri needs client_id or id_token_hint")?;
            let client = gw
                .clients
                .find(id)
                .await
                .map_err(|_| gw.pages.strings.unavailable.to_owned())?
                .filter(|c| c.active)
                .ok_or("unknown client")?;
            if !client
                .app
                .post_logout_redirect_uris
                .iter()
                .any(|u| u == uri)
            {
                return Err("post_logout_redirect_uri is not one the client registered".into());
            }
            let state: Vec<(&str, &str)> = p
                .get("state")
                .map(|s| ("state", s.as_str()))
                .into_iter()
                .collect();
            Some(apps::with_params(uri, &state))
        }
    };
    let hinted_sid = hint.and_then(|c| c.get("sid").and_then(|s| s.as_str()).map(str::to_owned));
    Ok(EndSession {
        destination,
        hinted_sid,
    })
}

/// `GET /oauth/logout`.
#[utoipa::path(get, operation_id = "end_session", path = "/oauth/logout", summary = "RP-initiated logout (OpenID Connect)", tag = "oidc",
    params(("id_token_hint" = Option<String>, Query, description = "An ID token this gateway issued (expired is fine)"),
           ("client_id" = Option<String>, Query, description = "The application, when there is no hint"),
           ("post_logout_redirect_uri" = Option<String>, Query, description = "One the application registered"),
           ("state" = Option<String>, Query, description = "Returned as given")),
    responses(
        (status = 303, description = "Signed out, back to `post_logout_redirect_uri` (with `state`)"),
        (status = 200, description = "Signed out (no redirect asked for), or, without a hint for this browser's session, a page asking the user to confirm", content_type = "text/html"),
        (status = 400, description = "An error page: an unknown hint or client, or an unregistered `post_logout_redirect_uri`", content_type = "text/html"),
    ))]
pub async fn end_session_get(req: HttpRequest, gw: web::Data<Identity>) -> HttpResponse {
    let raw = req.query_string().as_bytes().to_vec();
    end_session(&req, &gw, &raw, false).await
}

/// `POST /oauth/logout`: the request as a form, or the confirmation.
#[utoipa::path(post, operation_id = "end_session_form", path = "/oauth/logout", summary = "RP-initiated logout as a form, or its confirmation", tag = "oidc",
    request_body(content_type = "application/x-www-form-urlencoded", content = Object, description = "The GET's parameters; from the confirmation page also `csrf` and `confirm=yes`"),
    responses(
        (status = 303, description = "Signed out, back to the application"),
        (status = 200, description = "Signed out, or the confirmation page", content_type = "text/html"),
        (status = 400, description = "An error page", content_type = "text/html"),
    ))]
pub async fn end_session_post(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Bytes,
) -> HttpResponse {
    if body.len() > 16 * 1024 {
        return gw
            .pages
            .error(&req, StatusCode::BAD_REQUEST, "the request is too large");
    }
    end_session(&req, &gw, &body, true).await
}

async fn end_session(req: &HttpRequest, gw: &Identity, raw: &[u8], posted: bool) -> HttpResponse {
    let p = match parse_params(raw) {
        Ok(p) => p,
        Err(e) => return gw.pages.error(req, StatusCode::BAD_REQUEST, &e),
    };
    let checked = match check(gw, &p).await {
        Ok(c) => c,
        Err(e) => return gw.pages.error(req, StatusCode::BAD_REQUEST, &e),
    };
    let session = crate::identity::page::browser_session(gw, req).await;
    let confirmed = posted
        && p.get("confirm").is_some_and(|c| c == "yes")
        && gw
            .pages
            .form_is_ours(req, p.get("csrf").map(String::as_str));
    let Some(session) = session else {
        // Nothing to end here: go on.
        return sign_out_now(gw, req, checked.destination).await;
    };
    let hinted = checked.hinted_sid.as_deref() == Some(session.id.to_string().as_str());
    if hinted || confirmed {
        return sign_out_now(gw, req, checked.destination).await;
    }
    let pages = &gw.pages;
    let s = pages.strings;
    pages.render(req, StatusCode::OK, &pages.t(s.sign_out_title), |csrf| {
        html! {
            p { (pages.t(s.sign_out_intro)) }
            form method="post" action=(END_SESSION_PATH) {
                (hidden("csrf", csrf))
                (hidden("confirm", "yes"))
                @for (k, v) in p.iter().filter(|(k, _)| !["csrf", "confirm"].contains(&k.as_str())) {
                    (hidden(k, v))
                }
                button type="submit" { (s.sign_out) }
            }
        }
    })
}
