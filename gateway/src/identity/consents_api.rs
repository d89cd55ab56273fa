//! `/api/me/consents`: the applications a user allowed, and withdrawing
//! one. Withdrawing ends what the application holds for the user (its
//! refresh tokens and access tokens, on every replica at once), and the
//! next sign-in to it asks again.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use common::Problem;
use serde::Serialize;
use utoipa::ToSchema;

use super::Identity;
use crate::identity::admission::Bearer;

/// One application a user allowed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Consent {
    pub client_id: String,
    pub name: String,
    /// The scopes allowed.
    pub scopes: Vec<String>,
    pub granted_at: DateTime<Utc>,
}

fn failed(e: sea_orm::DbErr) -> HttpResponse {
    tracing::error!(error = %e, "the consent store failed");
    common::db::problem(&e).to_response()
}

/// `GET /api/me/consents`.
#[utoipa::path(get, operation_id = "list_my_consents", path = "/api/me/consents", summary = "The applications you allowed", tag = "oidc",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Each third-party application the caller allowed, with its scopes", body = Vec<Consent>),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(Bearer(caller): Bearer, gw: web::Data<Identity>) -> HttpResponse {
    let rows = match gw.codes.consents_of(caller.id()).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let mut out = Vec::with_capacity(rows.len());
    for (client, scopes, granted_at) in rows {
        if let Ok(c) = gw.clients.get(client).await {
            out.push(Consent {
                client_id: c.client_id,
                name: c.name,
                scopes,
                granted_at,
            });
        }
    }
    HttpResponse::Ok().json(out)
}

/// `DELETE /api/me/consents/{client_id}`.
#[utoipa::path(delete, operation_id = "withdraw_my_consent", path = "/api/me/consents/{client_id}", summary = "Withdraw an application's access", tag = "oidc",
    params(("client_id" = String, Path, description = "The application's client_id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Withdrawn: the application's sessions for you end on every replica, and it must ask again"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "You did not allow this application", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn withdraw(
    Bearer(caller): Bearer,
    gw: web::Data<Identity>,
    client_id: web::Path<String>,
) -> HttpResponse {
    let not_found = || Problem::not_found("no consent for this application").to_response();
    let client = match gw.clients.find(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(),
        Err(e) => return failed(e),
    };
    match gw.codes.withdraw(caller.id(), client.id).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return failed(e),
    }
    let families = match gw.sessions.of_app(caller.id(), client.id).await {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let mut denied = Vec::new();
    for f in families {
        match gw.sessions.revoke_family(f).await {
            Ok(d) => denied.push(d),
            Err(e) => return failed(e),
        }
    }
    gw.revocations.announce(&denied).await;
    gw.audit.record(
        common::audit::Event::new("oauth.consent.withdrawn", "success")
            .actor(Some(caller.id()))
            .subject(client.client_id.clone()),
    );
    HttpResponse::NoContent().finish()
}
