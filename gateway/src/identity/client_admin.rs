//! `/api/clients` (admins): register machine clients, change them, rotate
//! their secrets. A secret is in the answer that creates it and nowhere
//! else. What takes something from a client (deactivation, fewer scopes or
//! roles, a removed secret, deletion) revokes the tokens it holds at once,
//! on every replica, the way a logout does.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use common::audit::Event;
use common::{FieldError, Problem};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Identity;
use crate::identity::admission::AdminBearer;
use crate::identity::caller::client_ip;
use crate::identity::clients::{Client, ClientError, ClientPatch, MAX_SECRETS};

const MAX_NAME: usize = 128;
const MAX_SCOPES: usize = 64;
const MAX_ROLES: usize = 32;
const MAX_AUDIENCES: usize = 8;

/// `POST /api/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    #[schema(example = "billing-service")]
    pub name: String,
    /// Scopes it may be granted.
    #[serde(default)]
    #[schema(example = json!(["orders:read"]))]
    pub scopes: Vec<String>,
    /// Roles its tokens carry.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The audiences whose tokens it may introspect (a resource server's;
    /// by default none: it may not introspect).
    #[serde(default)]
    #[schema(example = json!(["gatehouse-api"]))]
    pub introspect: Vec<String>,
    /// An application people sign in to (the authorization code flow):
    /// where it may be sent back, each exact, https or http on loopback.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// By default the code flow and refresh when it has redirect URIs,
    /// client credentials otherwise.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// No secret: a single-page or native app, PKCE only.
    #[serde(default)]
    pub public: bool,
    /// The team's own: no consent screen.
    #[serde(default)]
    pub first_party: bool,
}

/// `PATCH /api/clients/{id}`: what is given changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub introspect: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub active: Option<bool>,
}

/// A new client and its first secret (shown this once; none for a public
/// client).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: Client,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// A new secret (shown this once).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedSecret {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub client_secret: String,
}

fn check(
    name: Option<&str>,
    scopes: Option<&[String]>,
    roles: Option<&[String]>,
    introspect: Option<&[String]>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, code: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            code: code.into(),
            message,
        });
    };
    if let Some(n) = name {
        if n.trim().is_empty() || n.chars().count() > MAX_NAME {
            bad("name", "length", format!("1 to {MAX_NAME} characters"));
        } else if n.chars().any(char::is_control) {
            bad("name", "text", "no control characters".into());
        }
    }
    let is_scope = |x: &String| crate::traffic::routes::is_valid_scope(x);
    let is_role = |x: &String| common::identity::is_valid_role(x);
    let lists = [
        (
            "scopes",
            scopes,
            MAX_SCOPES,
            &is_scope as &dyn Fn(&String) -> bool,
            "scope",
        ),
        ("roles", roles, MAX_ROLES, &is_role, "role"),
        (
            "introspect",
            introspect,
            MAX_AUDIENCES,
            &is_scope,
            "audience",
        ),
    ];
    for (field, list, max, valid, what) in lists {
        let Some(list) = list else { continue };
        if list.len() > max {
            bad(field, "length", format!("at most {max}"));
        }
        if let Some(x) = list.iter().find(|x| !valid(x)) {
            let why = match what {
                "scope" => format!("`{x}` is not a scope (RFC 6749 scope-token characters)"),
                "role" => format!("`{x}` is not a valid role name"),
                _ => format!("`{x}` is not an {what}"),
            };
            bad(field, what, why);
        }
        if (1..list.len()).any(|i| list[..i].contains(&list[i])) {
            bad(field, "unique", format!("each {what} once"));
        }
    }
    errors
}

fn failed(e: ClientError) -> HttpResponse {
    match e {
        ClientError::NotFound => Problem::not_found("no such client").to_response(),
        ClientError::TooManySecrets | ClientError::LastSecret => {
            Problem::conflict("client-secrets", e.to_string()).to_response()
        }
        ClientError::Hash(why) => {
            tracing::error!(reason = %why, "hashing a client secret failed");
            Problem::internal().to_response()
        }
        ClientError::Db(e) => {
            tracing::error!(error = %e, "client registry error");
            common::db::problem(&e).to_response()
        }
    }
}

/// Deny the tokens these `sid`s name, here and on every replica, before
/// the answer goes out.
async fn revoke(gw: &Identity, sids: &[String]) -> Result<(), HttpResponse> {
    if sids.is_empty() {
        return Ok(());
    }
    let until = crate::clock::unix_secs() + gw.client_deny_secs;
    let denied = gw.sessions.revoke_sids(sids, until).await.map_err(|e| {
        tracing::error!(error = %e, "revoking a client's tokens failed");
        common::db::problem(&e).to_response()
    })?;
    gw.revocations.announce(&denied).await;
    Ok(())
}

fn audit(
    gw: &Identity,
    admin: &AdminBearer,
    req: &HttpRequest,
    event: &'static str,
    subject: String,
    detail: String,
) {
    gw.audit.record(
        Event::new(event, "success")
            .actor(Some(admin.0.id()))
            .subject(subject)
            .client(client_ip(req).map(|a| a.to_string()))
            .detail(detail),
    );
}

fn secret_text(s: &SecretString) -> String {
    s.expose_secret().to_owned()
}

/// `POST /api/clients`.
#[utoipa::path(post, operation_id = "create_client", path = "/api/clients", summary = "Register a machine client", tag = "clients", request_body = NewClient,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; `client_secret` is shown this once (`Cache-Control: no-store`)", body = CreatedClient),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON, or invalid name, scopes or roles (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Json<NewClient>,
) -> HttpResponse {
    let errors = check(
        Some(&body.name),
        Some(&body.scopes),
        Some(&body.roles),
        Some(&body.introspect),
    );
    let app = crate::identity::apps::AppFields {
        grant_types: body.grant_types.clone().unwrap_or_else(|| {
            crate::identity::apps::AppFields::default_grants(&body.redirect_uris, body.public)
        }),
        redirect_uris: body.redirect_uris.clone(),
        post_logout_redirect_uris: body.post_logout_redirect_uris.clone(),
        public: body.public,
        first_party: body.first_party,
    };
    let mut errors = errors;
    errors.extend(crate::identity::apps::check(&app));
    if !errors.is_empty() {
        return Problem::validation(errors).to_response();
    }
    let reg = crate::identity::clients::Registration {
        name: body.name.trim(),
        scopes: &body.scopes,
        roles: &body.roles,
        introspect: &body.introspect,
        app,
    };
    match gw.clients.create(&reg, None).await {
        Ok((client, secret)) => {
            audit(
                &gw,
                &admin,
                &req,
                "admin.client.created",
                client.client_id.clone(),
                format!(
                    "scopes: {}; roles: {}",
                    client.scopes.join(" "),
                    client.roles.join(",")
                ),
            );
            HttpResponse::Created()
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .insert_header((
                    actix_web::http::header::LOCATION,
                    format!("/api/clients/{}", client.id),
                ))
                .json(CreatedClient {
                    client_secret: secret.as_ref().map(secret_text),
                    client,
                })
        }
        Err(e) => failed(e),
    }
}

/// `GET /api/clients`.
#[utoipa::path(get, operation_id = "list_clients", path = "/api/clients", summary = "Every machine client", tag = "clients",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The registered clients, oldest first (never a secret)", body = Vec<Client>),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(_: AdminBearer, gw: web::Data<Identity>) -> HttpResponse {
    match gw.clients.list().await {
        Ok(all) => HttpResponse::Ok().json(all),
        Err(e) => failed(e.into()),
    }
}

/// `GET /api/clients/{id}`.
#[utoipa::path(get, operation_id = "get_client", path = "/api/clients/{id}", summary = "One machine client", tag = "clients",
    params(("id" = Uuid, Path, description = "The client's principal id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client (never a secret)", body = Client),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(_: AdminBearer, gw: web::Data<Identity>, id: web::Path<Uuid>) -> HttpResponse {
    match gw.clients.get(*id).await {
        Ok(c) => HttpResponse::Ok().json(c),
        Err(e) => failed(e),
    }
}

/// `PATCH /api/clients/{id}`.
#[utoipa::path(patch, operation_id = "update_client", path = "/api/clients/{id}", summary = "Change a machine client", tag = "clients",
    params(("id" = Uuid, Path, description = "The client's principal id")), request_body = ClientUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed. Deactivating it, or changing its scopes or roles, revokes every token it holds, on every replica, before this answer", body = Client),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON, or invalid name, scopes or roles (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    id: web::Path<Uuid>,
    body: web::Json<ClientUpdate>,
) -> HttpResponse {
    let body = body.into_inner();
    let errors = check(
        body.name.as_deref(),
        body.scopes.as_deref(),
        body.roles.as_deref(),
        body.introspect.as_deref(),
    );
    let changes_app = body.redirect_uris.is_some()
        || body.post_logout_redirect_uris.is_some()
        || body.grant_types.is_some()
        || body.first_party.is_some();
    let app = if changes_app {
        let before = match gw.clients.get(*id).await {
            Ok(c) => c.app,
            Err(e) => return failed(e),
        };
        let app = crate::identity::apps::AppFields {
            redirect_uris: body.redirect_uris.unwrap_or(before.redirect_uris),
            post_logout_redirect_uris: body
                .post_logout_redirect_uris
                .unwrap_or(before.post_logout_redirect_uris),
            grant_types: body.grant_types.unwrap_or(before.grant_types),
            public: before.public,
            first_party: body.first_party.unwrap_or(before.first_party),
        };
        let mut errors = errors;
        errors.extend(crate::identity::apps::check(&app));
        if !errors.is_empty() {
            return Problem::validation(errors).to_response();
        }
        Some(app)
    } else {
        if !errors.is_empty() {
            return Problem::validation(errors).to_response();
        }
        None
    };
    let patch = ClientPatch {
        name: body.name.map(|n| n.trim().to_owned()),
        scopes: body.scopes,
        roles: body.roles,
        introspect: body.introspect,
        app,
        active: body.active,
    };
    match gw.clients.update(*id, patch).await {
        Ok((client, revoked)) => {
            if let Err(res) = revoke(&gw, &revoked).await {
                return res;
            }
            audit(
                &gw,
                &admin,
                &req,
                "admin.client.updated",
                client.client_id.clone(),
                format!(
                    "active: {}; scopes: {}; roles: {}; tokens revoked: {}",
                    client.active,
                    client.scopes.join(" "),
                    client.roles.join(","),
                    !revoked.is_empty()
                ),
            );
            HttpResponse::Ok().json(client)
        }
        Err(e) => failed(e),
    }
}

/// `DELETE /api/clients/{id}`.
#[utoipa::path(delete, operation_id = "delete_client", path = "/api/clients/{id}", summary = "Remove a machine client", tag = "clients",
    params(("id" = Uuid, Path, description = "The client's principal id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed; every token it held is revoked, on every replica"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    id: web::Path<Uuid>,
) -> HttpResponse {
    match gw.clients.delete(*id).await {
        Ok(revoked) => {
            if let Err(res) = revoke(&gw, &revoked).await {
                return res;
            }
            audit(
                &gw,
                &admin,
                &req,
                "admin.client.deleted",
                id.to_string(),
                String::new(),
            );
            HttpResponse::NoContent().finish()
        }
        Err(e) => failed(e),
    }
}

/// `POST /api/clients/{id}/secrets`.
#[utoipa::path(post, operation_id = "add_client_secret", path = "/api/clients/{id}/secrets", summary = "Add a secret (for a rotation)", tag = "clients",
    params(("id" = Uuid, Path, description = "The client's principal id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A further secret, shown this once; both work until one is removed", body = CreatedSecret),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The client already has two secrets; remove one first", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_secret(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    id: web::Path<Uuid>,
) -> HttpResponse {
    match gw.clients.add_secret(*id).await {
        Ok((info, secret)) => {
            audit(
                &gw,
                &admin,
                &req,
                "admin.client.secret_added",
                id.to_string(),
                format!("secret {} (at most {MAX_SECRETS})", info.id),
            );
            HttpResponse::Created()
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .json(CreatedSecret {
                    id: info.id,
                    created_at: info.created_at,
                    client_secret: secret_text(&secret),
                })
        }
        Err(e) => failed(e),
    }
}

/// `DELETE /api/clients/{id}/secrets/{secret_id}`.
#[utoipa::path(delete, operation_id = "remove_client_secret", path = "/api/clients/{id}/secrets/{secret_id}", summary = "Remove a secret", tag = "clients",
    params(("id" = Uuid, Path, description = "The client's principal id"), ("secret_id" = Uuid, Path, description = "The secret's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed; the tokens obtained with it are revoked, on every replica"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client or secret", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is the client's last secret", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_secret(
    admin: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    path: web::Path<(Uuid, Uuid)>,
) -> HttpResponse {
    let (id, secret_id) = *path;
    match gw.clients.remove_secret(id, secret_id).await {
        Ok(sid) => {
            if let Err(res) = revoke(&gw, &[sid]).await {
                return res;
            }
            audit(
                &gw,
                &admin,
                &req,
                "admin.client.secret_removed",
                id.to_string(),
                format!("secret {secret_id}"),
            );
            HttpResponse::NoContent().finish()
        }
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_checked_field_by_field() {
        let ok = check(
            Some("billing"),
            Some(&["orders:read".into()]),
            Some(&["user".into()]),
            Some(&["api".into()]),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let errors = check(
            Some(""),
            Some(&["a b".into(), "x".into(), "x".into()]),
            Some(&["no way".into()]),
            Some(&["a b".into()]),
        );
        let fields: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("name", "length"),
                ("scopes", "scope"),
                ("scopes", "unique"),
                ("roles", "role"),
                ("introspect", "audience")
            ]
        );
        assert_eq!(check(Some("a\u{7}"), None, None, None)[0].code, "text");
    }
}
