//! `/api/me/sessions`: the browsers a user is signed in on, and ending
//! them. Ending one ends what was issued through it (the applications'
//! sessions without `offline_access`) on every replica before the answer;
//! ending them all ("sign out everywhere") also ends the user's API
//! sessions (refresh tokens) and access tokens.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use common::Problem;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Identity;
use crate::identity::admission::SignedIn;
use crate::identity::browser::BrowserSession;
use crate::identity::caller::Caller;

/// One browser session of the caller's.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    /// This is the session the request came with.
    pub current: bool,
    /// The browser's `User-Agent` at sign-in.
    pub device: String,
    /// The client address at sign-in.
    pub address: String,
    /// How the sign-in authenticated (RFC 8176 `amr`: `pwd`, `otp`...).
    pub auth_methods: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When it ends however active (idle sessions end earlier).
    pub expires_at: DateTime<Utc>,
}

/// `GET /api/me/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionView>,
}

/// The browser session a caller came with (not a token's).
pub fn browser_session_of(caller: &Caller) -> Option<Uuid> {
    let c = caller.claims();
    if c.jti.is_empty() && c.client_id.is_none() {
        Uuid::parse_str(&c.sid).ok()
    } else {
        None
    }
}

fn view(s: BrowserSession, current: Option<Uuid>) -> SessionView {
    SessionView {
        id: s.id,
        current: current == Some(s.id),
        device: s.user_agent,
        address: s.client,
        auth_methods: s.amr,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
    }
}

fn failed(e: sea_orm::DbErr) -> HttpResponse {
    tracing::error!(error = %e, "the browser session store failed");
    common::db::problem(&e).to_response()
}

/// `GET /api/me/sessions`.
#[utoipa::path(get, operation_id = "list_my_sessions", path = "/api/me/sessions", summary = "The browsers you are signed in on", tag = "sign-in",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's live browser sessions, newest first; `current` marks the one the request came with", body = SessionList),
        (status = 401, description = "Neither a valid access token nor a live browser session", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(SignedIn(caller): SignedIn, gw: web::Data<Identity>) -> HttpResponse {
    let current = browser_session_of(&caller);
    match gw.browser.of_user(caller.id()).await {
        Ok(rows) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(SessionList {
                sessions: rows.into_iter().map(|s| view(s, current)).collect(),
            }),
        Err(e) => failed(e),
    }
}

/// `DELETE /api/me/sessions/{id}`.
#[utoipa::path(delete, operation_id = "end_my_session", path = "/api/me/sessions/{id}", summary = "Sign one browser out", tag = "sign-in",
    params(("id" = Uuid, Path, description = "The session's id, from the list")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Ended on every replica, with the applications' sessions issued through it (without `offline_access`)"),
        (status = 401, description = "Neither a valid access token nor a live browser session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A browser session's request from another site", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "None of your live sessions has this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn end(
    SignedIn(caller): SignedIn,
    gw: web::Data<Identity>,
    id: web::Path<String>,
) -> HttpResponse {
    let not_found = || Problem::not_found("none of your live sessions has this id").to_response();
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    // Only the caller's own: another user's id is as unknown as a made-up one.
    match gw.browser.of_user(caller.id()).await {
        Ok(rows) if rows.iter().any(|s| s.id == id) => {}
        Ok(_) => return not_found(),
        Err(e) => return failed(e),
    }
    if !crate::identity::login_page::end_browser_session(&gw, id).await {
        return Problem::service_unavailable("the session could not be ended; repeat the request")
            .to_response();
    }
    gw.audit.record(
        common::audit::Event::new("browser_session.ended", "success")
            .actor(Some(caller.id()))
            .subject(id.to_string())
            .detail("ended by its user from the session list"),
    );
    HttpResponse::NoContent().finish()
}

/// `DELETE /api/me/sessions`: sign out everywhere.
#[utoipa::path(delete, operation_id = "end_all_my_sessions", path = "/api/me/sessions", summary = "Sign out everywhere", tag = "sign-in",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Every browser session, API session (refresh token) and access token of yours ends on every replica, this one's included"),
        (status = 401, description = "Neither a valid access token nor a live browser session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A browser session's request from another site", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn end_all(SignedIn(caller): SignedIn, gw: web::Data<Identity>) -> HttpResponse {
    let user = caller.id();
    let ended = async {
        let mut denied = gw.sessions.revoke_user(user, None).await?;
        let browser = gw.browser.end_user(user).await?;
        let sids: Vec<String> = browser.iter().map(Uuid::to_string).collect();
        let until = crate::clock::unix_secs() + gw.browser.absolute_secs();
        denied.extend(gw.sessions.revoke_sids(&sids, until).await?);
        Ok::<_, sea_orm::DbErr>((denied, browser.len()))
    };
    match ended.await {
        Ok((denied, browsers)) => {
            gw.revocations.announce(&denied).await;
            gw.audit.record(
                common::audit::Event::new("sessions.ended", "success")
                    .actor(Some(user))
                    .subject(user.to_string())
                    .detail(format!(
                        "signed out everywhere by its user ({browsers} browser session(s))"
                    )),
            );
            HttpResponse::NoContent()
                .cookie(gw.pages.session_removal())
                .finish()
        }
        Err(e) => failed(e),
    }
}
