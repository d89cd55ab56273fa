//! HTTP handlers: extract -> call a `service` function -> map to a DTO.
//! Every handler takes the caller first, so a request without a valid gateway
//! proof is refused (401) before its input is looked at.

use actix_web::ResponseError;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use common::http::{GatewayProofScheme, Health, TextInputErrors};
use common::identity::{
    Admin, CREDENTIAL_CHECK_HEADER, CREDENTIAL_LOCKED_HEADER, Caller, GatewayCall,
    REVOKE_SESSIONS_HEADER,
};
use common::{FieldError, Problem};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use utoipa::OpenApi;
use uuid::Uuid;

use common::audit::{AuditQuery, AuditRecord, Event};

use crate::domain::{Email, Fields, FullName, Password, Role, Username};
use crate::dto::{
    CreateUserRequest, CredentialsRequest, LinkRequest, LinkedIdentity, ListQuery, UpdateMeRequest,
    UpdateUserRequest, UserIdentity, UserList, UserResponse,
};
use crate::error::{Error, Result};
use crate::password::PasswordHasher;
use crate::service::{self, ListFilter, NewUser, UserPatch};

type Db = web::Data<DatabaseConnection>;
type Hasher = web::Data<PasswordHasher>;
type Audit = web::Data<common::audit::AuditLog>;

/// The client the gateway names (it sets `X-Forwarded-For` to the address
/// it believes; only the gateway reaches these routes).
fn client(req: &actix_web::HttpRequest) -> Option<String> {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Mount the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").get(list_users).post(create_user))
        .service(
            web::resource("/users/{id}")
                .get(get_user)
                .patch(update_user)
                .delete(delete_user),
        )
        .service(web::resource("/me").get(get_me).patch(update_me))
        .configure(crate::mfa_routes::configure)
        .service(web::resource("/internal/credentials/verify").post(verify_credentials))
        .service(web::resource("/internal/users/{id}").get(internal_get_user))
        .service(web::resource("/internal/links").post(link_identity))
        .service(web::resource("/internal/audit").get(internal_audit))
        .service(web::resource("/metrics").get(metrics))
        .service(web::resource("/openapi.json").get(openapi_json))
        .configure(common::http::health_routes);
}

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

fn hash_new(fields: &mut Fields, field: &str, raw: Option<&SecretString>) -> Option<Password> {
    raw.and_then(|p| fields.take(Password::parse(field, p)))
}

/// `full_name` of a PATCH: absent leaves it, `null` clears it.
fn full_name_patch(fields: &mut Fields, raw: Option<&Option<String>>) -> Option<Option<FullName>> {
    match raw? {
        None => Some(None),
        Some(n) => fields.take(FullName::parse("full_name", n)).map(Some),
    }
}

/// List users (admin).
#[utoipa::path(get, path = "/users", tag = "users", params(ListQuery),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 400, description = "Unparsable query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid limit, offset or role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_users(
    _admin: Admin,
    db: Db,
    q: web::Query<ListQuery>,
) -> Result<web::Json<UserList>> {
    let mut fields = Fields::default();
    let limit = match q.limit {
        None => Some(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => Some(l as u64),
        Some(_) => fields.take(Err(FieldError::new(
            "limit",
            "range",
            format!("must be 1 to {MAX_LIMIT}"),
        ))),
    };
    let offset = match q.offset {
        None => Some(0),
        Some(o) if o >= 0 => Some(o as u64),
        Some(_) => fields.take(Err(FieldError::new("offset", "range", "must be 0 or more"))),
    };
    let role = q
        .role
        .as_deref()
        .map(|r| fields.take(Role::parse("role", r)));
    fields.finish()?;
    let (limit, offset) = (limit.unwrap_or(DEFAULT_LIMIT), offset.unwrap_or(0));
    let filter = ListFilter {
        username: q.username.clone(),
        email: q.email.clone(),
        role: role.flatten(),
        active: q.active,
    };
    let (users, total) = service::list(db.get_ref(), &filter, limit, offset).await?;
    Ok(web::Json(UserList {
        items: users.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUserRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the new user", body = UserResponse,
            headers(("location" = String, description = "Path of the new user"))),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or e-mail taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (all listed); a username starting with `fed.` is `reserved` for linked accounts", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    _admin: Admin,
    db: Db,
    hasher: Hasher,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let mut f = Fields::default();
    let username = f.take(Username::parse_local("username", &body.username));
    let email = f.take(Email::parse("email", &body.email));
    let full_name = body
        .full_name
        .as_deref()
        .map(|n| f.take(FullName::parse("full_name", n)));
    let password = hash_new(&mut f, "password", Some(&body.password));
    let roles = match &body.roles {
        Some(r) => Role::parse_list("roles", r, &mut f.0),
        None => Some(vec![Role::User]),
    };
    f.finish()?;
    let (Some(username), Some(email), Some(password), Some(roles)) =
        (username, email, password, roles)
    else {
        return Err(Error::Validation(Vec::new()));
    };
    let password_hash = hasher.hash(password.secret().clone()).await?;
    let user = service::create(
        db.get_ref(),
        NewUser {
            username,
            email,
            full_name: full_name.flatten(),
            password_hash,
            roles,
            is_active: body.is_active.unwrap_or(true),
        },
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/users/{}", user.id)))
        .json(UserResponse::from(user)))
}

/// Get a user (admin).
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_user(
    _admin: Admin,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<UserResponse>> {
    Ok(web::Json(
        service::get(db.get_ref(), id.into_inner()).await?.into(),
    ))
}

/// Change a user: fields, roles, activation, password reset (admin).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    request_body = UpdateUserRequest, security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The changed user", body = UserResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or e-mail taken, or the last active admin would be lost", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (all listed); a new username across the `fed.` prefix of linked accounts is `reserved`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_user(
    admin: Admin,
    req: actix_web::HttpRequest,
    db: Db,
    hasher: Hasher,
    audit: Audit,
    id: web::Path<Uuid>,
    body: web::Json<UpdateUserRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let id = id.into_inner();
    let mut f = Fields::default();
    let mut patch = UserPatch {
        username: body
            .username
            .as_deref()
            .and_then(|u| f.take(Username::parse("username", u))),
        email: body
            .email
            .as_deref()
            .and_then(|e| f.take(Email::parse("email", e))),
        is_active: body.is_active,
        ..Default::default()
    };
    patch.full_name = full_name_patch(&mut f, body.full_name.as_ref());
    if let Some(roles) = &body.roles {
        patch.roles = Role::parse_list("roles", roles, &mut f.0);
    }
    let password = hash_new(&mut f, "password", body.password.as_ref());
    f.finish()?;
    if let Some(p) = password {
        patch.password_hash = Some(hasher.hash(p.secret().clone()).await?);
    }
    let before = service::get(db.get_ref(), id).await?;
    // What makes the account's sessions end at once: a password reset, a
    // deactivation, a role taken away.
    let ends_sessions = patch.password_hash.is_some()
        || patch.is_active == Some(false)
        || patch
            .roles
            .as_ref()
            .is_some_and(|now| before.roles.iter().any(|r| !now.contains(r)));
    let reset = patch.password_hash.is_some();
    let after = service::update(db.get_ref(), id, patch).await?;
    let event = |name: &'static str, detail: String| {
        audit.record(
            Event::new(name, "success")
                .actor(Some(admin.0.id))
                .subject(id.to_string())
                .client(client(&req))
                .detail(detail),
        );
    };
    if reset {
        event("user.password_reset", "an admin set a new password".into());
    }
    if before.is_active != after.is_active {
        let name = if after.is_active {
            "user.activated"
        } else {
            "user.deactivated"
        };
        event(
            name,
            format!("is_active: {} -> {}", before.is_active, after.is_active),
        );
    }
    let sorted = |roles: &[crate::domain::Role]| {
        let mut r: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        r.sort_unstable();
        r
    };
    if sorted(&before.roles) != sorted(&after.roles) {
        event(
            "user.roles_changed",
            format!(
                "roles: [{}] -> [{}]",
                join(&before.roles),
                join(&after.roles)
            ),
        );
    }
    let mut res = HttpResponse::Ok();
    if ends_sessions {
        res.insert_header((REVOKE_SESSIONS_HEADER, id.to_string()));
    }
    Ok(res.json(UserResponse::from(after)))
}

fn join(roles: &[crate::domain::Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Delete a user (admin).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last active admin cannot be deleted", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_user(
    admin: Admin,
    req: actix_web::HttpRequest,
    db: Db,
    audit: Audit,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    service::delete(db.get_ref(), id).await?;
    audit.record(
        Event::new("user.deleted", "success")
            .actor(Some(admin.0.id))
            .subject(id.to_string())
            .client(client(&req)),
    );
    Ok(HttpResponse::NoContent()
        .insert_header((REVOKE_SESSIONS_HEADER, id.to_string()))
        .finish())
}

/// The caller's own account.
#[utoipa::path(get, path = "/me", tag = "me", security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_me(caller: Caller, db: Db) -> Result<web::Json<UserResponse>> {
    Ok(web::Json(
        service::get(db.get_ref(), caller.id).await?.into(),
    ))
}

/// Change the caller's own name, e-mail or password. A new e-mail or password
/// needs the current password; checking it tells the gateway the outcome
/// (a wrong one counts toward the login lockout), and a new password ends
/// every other session of the account.
#[utoipa::path(patch, path = "/me", tag = "me", request_body = UpdateMeRequest, security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The changed account", body = UserResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The current password is wrong (it counts toward the login lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords for this account (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "E-mail taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_me(
    caller: Caller,
    req: actix_web::HttpRequest,
    db: Db,
    hasher: Hasher,
    audit: Audit,
    body: web::Json<UpdateMeRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let mut f = Fields::default();
    let mut patch = UserPatch {
        email: body
            .email
            .as_deref()
            .and_then(|e| f.take(Email::parse("email", e))),
        ..Default::default()
    };
    patch.full_name = full_name_patch(&mut f, body.full_name.as_ref());
    let password = hash_new(&mut f, "password", body.password.as_ref());
    let sensitive = body.password.is_some() || body.email.is_some();
    if sensitive && body.current_password.is_none() {
        f.0.push(FieldError::new(
            "current_password",
            "required",
            "is required to change the e-mail or the password",
        ));
    }
    f.finish()?;
    // The gateway says the caller's password budget is spent: no check.
    if let (true, Some(secs)) = (
        sensitive,
        req.headers()
            .get(CREDENTIAL_LOCKED_HEADER)
            .and_then(|v| v.to_str().ok()),
    ) {
        return Ok(Problem::too_many_requests(
            "too-many-attempts",
            "too many failed password checks; retry later",
        )
        .to_response_retry_after(secs.parse().unwrap_or(1)));
    }
    let mut checked = None;
    if let (true, Some(current)) = (sensitive, body.current_password) {
        let stored = service::password_hash(db.get_ref(), caller.id).await?;
        let right = hasher.verify(current, Some(stored)).await?;
        checked = Some(if right { "passed" } else { "failed" });
        if !right {
            let mut res = Error::Forbidden("the current password is incorrect").error_response();
            res.headers_mut().insert(
                header::HeaderName::from_static(CREDENTIAL_CHECK_HEADER),
                header::HeaderValue::from_static("failed"),
            );
            return Ok(res);
        }
    }
    if let Some(new) = password {
        patch.password_hash = Some(hasher.hash(new.secret().clone()).await?);
    }
    let ends_sessions = patch.password_hash.is_some();
    let after = service::update(db.get_ref(), caller.id, patch).await?;
    if ends_sessions {
        audit.record(
            Event::new("user.password_changed", "success")
                .actor(Some(caller.id))
                .subject(caller.id.to_string())
                .client(client(&req))
                .detail("the user set a new password; their other sessions end"),
        );
    }
    let mut res = HttpResponse::Ok();
    if let Some(c) = checked {
        res.insert_header((CREDENTIAL_CHECK_HEADER, c));
    }
    if ends_sessions {
        res.insert_header((
            REVOKE_SESSIONS_HEADER,
            format!("{}; keep=current", caller.id),
        ));
    }
    Ok(res.json(UserResponse::from(after)))
}

/// A page of this service's audit trail (gateway only: it merges it with
/// its own at `GET /api/audit`).
#[utoipa::path(get, path = "/internal/audit", tag = "internal", params(AuditQuery),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "Records, newest first", body = Vec<AuditRecord>),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the gateway", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn internal_audit(
    _gateway: GatewayCall,
    audit: Audit,
    query: web::Query<AuditQuery>,
) -> std::result::Result<HttpResponse, Problem> {
    let filter = query.into_inner().check()?;
    let rows = common::audit::list(audit.db(), "users", &filter)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading the audit trail failed");
            common::db::problem(&e)
        })?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Prometheus text: the audit writes that failed.
pub async fn metrics(audit: Audit) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(format!(
            "# HELP users_audit_write_failures_total Audit records that could not be written (the requests they describe answered anyway).\n# TYPE users_audit_write_failures_total counter\nusers_audit_write_failures_total {}\n",
            audit.failures()
        ))
}

/// Check a username and password (gateway only). One uniform 401 for an
/// unknown user, a wrong password and an inactive account, with the same
/// work done in each case.
#[utoipa::path(post, path = "/internal/credentials/verify", tag = "internal", request_body = CredentialsRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "Valid credentials of an active user", body = UserIdentity),
        (status = 401, description = "Invalid credentials, or no valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The proof is a user's, not the gateway's", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many password checks in progress", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_credentials(
    _gateway: GatewayCall,
    db: Db,
    hasher: Hasher,
    body: web::Json<CredentialsRequest>,
) -> Result<web::Json<UserIdentity>> {
    let body = body.into_inner();
    // An invalid name cannot exist, and the caller knows the rules: no lookup.
    let found = match Username::parse("username", &body.username) {
        Ok(u) => service::find_for_login(db.get_ref(), u.as_str()).await?,
        Err(_) => None,
    };
    let hash = found.as_ref().map(|c| c.password_hash.clone());
    // An unknown name verifies the dummy hash: the same work as a wrong
    // password, and nothing read before or after it on either path.
    let valid = hasher.verify(body.password, hash).await?;
    match found {
        Some(c) if valid && c.is_active => {
            Ok(web::Json(service::get(db.get_ref(), c.id).await?.into()))
        }
        _ => Err(Error::InvalidCredentials),
    }
}

/// Re-read a user's identity (gateway only, at token refresh).
#[utoipa::path(get, path = "/internal/users/{id}", tag = "internal", params(("id" = Uuid, Path, description = "User id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The user's identity and state", body = UserIdentity),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The proof is a user's, not the gateway's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn internal_get_user(
    _gateway: GatewayCall,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<UserIdentity>> {
    Ok(web::Json(
        service::get(db.get_ref(), id.into_inner()).await?.into(),
    ))
}

/// Link an external identity to its local account (gateway only, for a
/// token of a trusted identity provider): the account is created on first
/// use, with no password and a username in the linked accounts' namespace
/// (`fed.` and the preferred one, made valid and unique: `fed.alice`, or
/// `fed.alice-2` when that is taken), and its roles are set to the mapped
/// ones on every call unless it is deactivated. The answer says whether it
/// is active.
#[utoipa::path(post, path = "/internal/links", tag = "internal", request_body = LinkRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The linked account's identity and state", body = UserIdentity),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The proof is a user's, not the gateway's", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An empty issuer or subject, or a role that does not exist", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn link_identity(
    _gateway: GatewayCall,
    req: actix_web::HttpRequest,
    db: Db,
    audit: Audit,
    body: web::Json<LinkRequest>,
) -> Result<web::Json<UserIdentity>> {
    let body = body.into_inner();
    let mut f = Fields::default();
    for (field, value, max) in [
        ("issuer", &body.issuer, 512),
        ("subject", &body.subject, 255),
    ] {
        if value.is_empty() || value.len() > max {
            f.take::<()>(Err(FieldError::new(
                field,
                "length",
                format!("must be 1 to {max} bytes"),
            )));
        }
    }
    let mut roles = Vec::with_capacity(body.roles.len());
    for (i, r) in body.roles.iter().enumerate() {
        if let Some(role) = f.take(Role::parse(&format!("roles[{i}]"), r)) {
            roles.push(role);
        }
    }
    f.finish()?;
    let identity = service::ExternalIdentity {
        issuer: body.issuer,
        subject: body.subject,
        username: body.username,
        email: body.email,
        roles,
    };
    let (user, how) = service::link(db.get_ref(), &identity).await?;
    let event = |name: &'static str, detail: String| {
        audit.record(
            Event::new(name, "success")
                .subject(user.id.to_string())
                .client(client(&req))
                .detail(detail),
        );
    };
    match &how {
        service::Linked::Created => event(
            "user.linked",
            format!(
                "account `{}` created for subject `{}` of {} with roles [{}]",
                user.username,
                identity.subject,
                identity.issuer,
                join(&user.roles)
            ),
        ),
        service::Linked::Existing {
            roles_before,
            renamed_from,
        } => {
            if let Some(before) = roles_before {
                event(
                    "user.roles_changed",
                    format!(
                        "roles: [{}] -> [{}] (from the identity provider)",
                        join(before),
                        join(&user.roles)
                    ),
                );
            }
            if let Some(before) = renamed_from {
                event(
                    "user.renamed",
                    format!(
                        "username: `{before}` -> `{}` (linked accounts' names carry the `{}` prefix)",
                        user.username,
                        crate::domain::LINKED_PREFIX
                    ),
                );
            }
        }
    }
    Ok(web::Json(user.into()))
}

/// This service's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The users service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "gatehouse users service", version = "0.1.0",
        description = "Accounts, roles and credentials. Reached only through the gateway, which proves the caller's identity."),
    paths(list_users, create_user, get_user, update_user, delete_user, get_me, update_me,
        crate::mfa_routes::status, crate::mfa_routes::enrol, crate::mfa_routes::confirm,
        crate::mfa_routes::disable, crate::mfa_routes::new_recovery_codes, crate::mfa_routes::reset,
        verify_credentials, internal_get_user, link_identity, crate::mfa_routes::verify,
        internal_audit, common::http::healthz, common::http::readyz, openapi_json),
    components(schemas(Problem, FieldError, UserResponse, UserList, CreateUserRequest, UpdateUserRequest,
        UpdateMeRequest, CredentialsRequest, UserIdentity, LinkRequest, LinkedIdentity, Role, Health, AuditRecord,
        crate::mfa_routes::EnrolRequest, crate::mfa_routes::TotpEnrolment, crate::mfa_routes::CodeRequest,
        crate::mfa_routes::DisableRequest, crate::mfa_routes::RecoveryCodes, crate::mfa_routes::MfaStatus,
        crate::mfa_routes::MfaVerifyRequest)),
    modifiers(&GatewayProofScheme, &TextInputErrors),
    tags(
        (name = "users", description = "Account administration (admin role)"),
        (name = "me", description = "The caller's own account"),
        (name = "mfa", description = "The caller's second factor: TOTP (RFC 6238) and recovery codes"),
        (name = "internal", description = "Called by the gateway only; never exposed publicly"),
        (name = "health", description = "Probes and metadata"),
    )
)]
pub struct ApiDoc;
