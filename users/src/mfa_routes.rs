//! The second-factor endpoints (see `crate::mfa`): self-service under
//! `/me/mfa` (the gateway reaches it as `/api/me/mfa`), the admin's reset,
//! and the gateway's code check at login.
//!
//! Every password and code checked here counts toward the account's login
//! lockout: the answer tells the gateway `x-gatehouse-credential-check:
//! passed|failed`, and a request the gateway marks
//! `x-gatehouse-credential-locked` is answered 429 before anything is
//! checked. Changes to the second factor end the account's other sessions
//! (`x-gatehouse-revoke-sessions`); an admin's reset ends all of them.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use common::audit::Event;
use common::identity::{
    Admin, CREDENTIAL_CHECK_HEADER, CREDENTIAL_LOCKED_HEADER, Caller, GatewayCall,
    REVOKE_SESSIONS_HEADER,
};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::UserIdentity;
use crate::error::{Error, Result};
use crate::mfa::{self, SecretBox, State};
use crate::password::PasswordHasher;
use crate::service;

type Db = web::Data<DatabaseConnection>;
type Hasher = web::Data<PasswordHasher>;
type Audit = web::Data<common::audit::AuditLog>;
type Sealer = web::Data<SecretBox>;

/// Mount the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/me/mfa").get(status))
        .service(web::resource("/me/mfa/totp").post(enrol).delete(disable))
        .service(web::resource("/me/mfa/totp/confirm").post(confirm))
        .service(web::resource("/me/mfa/recovery-codes").post(new_recovery_codes))
        .service(web::resource("/users/{id}/mfa").delete(reset))
        .service(web::resource("/internal/mfa/verify").post(verify));
}

/// `POST /me/mfa/totp`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The account's password, checked again for this change.
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
}

/// A new TOTP secret, shown once: add it to an authenticator app, then
/// confirm it with a code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TotpEnrolment {
    /// `otpauth://totp/gatehouse:<username>?secret=...&issuer=gatehouse`
    /// (RFC 6238: SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The secret in base32, for typing in by hand.
    pub secret: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// A code from the authenticator app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Six digits (spaces ignored).
    #[schema(example = "123456")]
    pub code: String,
}

/// `DELETE /me/mfa/totp`: the password and a code (from the app, or one
/// of the recovery codes).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// One-time recovery codes, shown once: each signs in once in place of a
/// code from the app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(example = json!(["abcd-efgh-jkmn-pqrs"]))]
    pub recovery_codes: Vec<String>,
}

/// The caller's second factor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MfaStatus {
    /// `none`, `pending` (enrolled, not confirmed yet) or `active`.
    #[schema(example = "active")]
    pub totp: String,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u64,
}

/// The gateway's check of a login's second step.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    pub user_id: Uuid,
    /// A code from the app; or
    #[serde(default)]
    pub code: Option<String>,
    /// one of the recovery codes.
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// What the gateway says of the caller's password budget: spent, for so
/// many seconds.
fn locked(req: &HttpRequest) -> Option<HttpResponse> {
    let secs = req
        .headers()
        .get(CREDENTIAL_LOCKED_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .unwrap_or(1);
    Some(
        Problem::too_many_requests(
            "too-many-attempts",
            "too many failed password or code checks; retry later",
        )
        .to_response_retry_after(secs),
    )
}

/// Tell the gateway how the check went.
fn verdict(res: &mut HttpResponse, passed: bool) {
    res.headers_mut().insert(
        header::HeaderName::from_static(CREDENTIAL_CHECK_HEADER),
        header::HeaderValue::from_static(if passed { "passed" } else { "failed" }),
    );
}

fn refused(why: &'static str) -> HttpResponse {
    let mut res = Problem::forbidden(why).to_response();
    verdict(&mut res, false);
    res
}

fn no_store(res: &mut HttpResponse) {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
}

/// End the account's sessions: all of them, or all but the caller's.
fn end_sessions(res: &mut HttpResponse, user: Uuid, keep_current: bool) {
    let value = if keep_current {
        format!("{user}; keep=current")
    } else {
        user.to_string()
    };
    if let Ok(v) = header::HeaderValue::from_str(&value) {
        res.headers_mut()
            .insert(header::HeaderName::from_static(REVOKE_SESSIONS_HEADER), v);
    }
}

fn client(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The caller's account, as a person with a password of this service.
async fn own_account(db: &DatabaseConnection, caller: &Caller) -> Result<service::User> {
    if caller.client {
        return Err(Error::Forbidden("a machine client has no second factor"));
    }
    let user = service::get(db, caller.id).await?;
    if user.linked.is_some() {
        return Err(Error::Forbidden(
            "this account signs in through its identity provider, whose second factor applies",
        ));
    }
    Ok(user)
}

/// The caller's second factor.
#[utoipa::path(get, path = "/me/mfa", tag = "mfa", security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "Whether a TOTP is active or pending, and the recovery codes left", body = MfaStatus),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(caller: Caller, db: Db) -> Result<web::Json<MfaStatus>> {
    service::get(db.get_ref(), caller.id).await?;
    let totp = match mfa::state(db.get_ref(), caller.id).await? {
        State::None => "none",
        State::Pending => "pending",
        State::Active => "active",
    };
    Ok(web::Json(MfaStatus {
        totp: totp.into(),
        recovery_codes_left: mfa::recovery_codes_left(db.get_ref(), caller.id).await?,
    }))
}

/// Start a TOTP enrolment (the password is checked again; a wrong one
/// counts toward the login lockout). The secret is shown this once; the
/// TOTP is active once `POST /me/mfa/totp/confirm` gets a code of it.
#[utoipa::path(post, path = "/me/mfa/totp", tag = "mfa", request_body = EnrolRequest, security(("gateway_proof" = [])),
    responses(
        (status = 201, description = "The new secret: an `otpauth://` URI, the secret in base32 and a QR code (SVG); shown once", body = TotpEnrolment),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The current password is wrong (it counts toward the login lockout), or the account has no password here", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A second factor is already active", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed checks for this account (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enrol(
    caller: Caller,
    req: HttpRequest,
    db: Db,
    hasher: Hasher,
    sealer: Sealer,
    audit: Audit,
    body: web::Json<EnrolRequest>,
) -> Result<HttpResponse> {
    if let Some(res) = locked(&req) {
        return Ok(res);
    }
    let user = own_account(db.get_ref(), &caller).await?;
    let stored = service::password_hash(db.get_ref(), caller.id).await?;
    if !hasher
        .verify(body.into_inner().current_password, Some(stored))
        .await?
    {
        return Ok(refused("the current password is incorrect"));
    }
    let enrolment = mfa::begin(db.get_ref(), &sealer, caller.id, &user.username).await;
    let enrolment = match enrolment {
        Ok(e) => e,
        Err(e) => {
            let mut res = actix_web::ResponseError::error_response(&e);
            verdict(&mut res, true);
            return Ok(res);
        }
    };
    audit.record(
        Event::new("mfa.enrolment_started", "success")
            .actor(Some(caller.id))
            .subject(caller.id.to_string())
            .client(client(&req))
            .detail("a TOTP secret was issued; it is active once a code confirms it"),
    );
    let mut res = HttpResponse::Created().json(TotpEnrolment {
        otpauth_uri: enrolment.otpauth_uri,
        secret: enrolment.secret,
        qr_svg: enrolment.qr_svg,
    });
    verdict(&mut res, true);
    no_store(&mut res);
    Ok(res)
}

/// Confirm the enrolment with a code from the app: the TOTP is active from
/// now on (logins ask for a code), the account's other sessions end, and
/// its recovery codes are shown this once. A wrong code counts toward the
/// login lockout.
#[utoipa::path(post, path = "/me/mfa/totp/confirm", tag = "mfa", request_body = CodeRequest, security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "Active; ten one-time recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The code is wrong or was used already (it counts toward the login lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrolment in progress, or the TOTP is active already", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed checks for this account (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirm(
    caller: Caller,
    req: HttpRequest,
    db: Db,
    sealer: Sealer,
    audit: Audit,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse> {
    if let Some(res) = locked(&req) {
        return Ok(res);
    }
    let user = own_account(db.get_ref(), &caller).await?;
    let Some(codes) =
        mfa::confirm(db.get_ref(), &sealer, caller.id, &user.username, &body.code).await?
    else {
        audit.record(
            Event::new("mfa.confirm_failed", "failure")
                .actor(Some(caller.id))
                .subject(caller.id.to_string())
                .client(client(&req))
                .detail("a wrong code for the pending TOTP"),
        );
        return Ok(refused("the code is not valid"));
    };
    audit.record(
        Event::new("mfa.enabled", "success")
            .actor(Some(caller.id))
            .subject(caller.id.to_string())
            .client(client(&req))
            .detail("TOTP active, recovery codes issued; the other sessions end"),
    );
    let mut res = HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    });
    verdict(&mut res, true);
    no_store(&mut res);
    end_sessions(&mut res, caller.id, true);
    Ok(res)
}

/// Exactly one of a code from the app and a recovery code (else 422).
fn one_of(code: &Option<String>, recovery_code: &Option<String>) -> Result<()> {
    if code.is_some() == recovery_code.is_some() {
        return Err(Error::Validation(vec![common::FieldError::new(
            "code",
            "required",
            "give either a code from the app or a recovery code",
        )]));
    }
    Ok(())
}

/// Check a code of the active TOTP, or one of the recovery codes.
async fn second_factor(
    db: &DatabaseConnection,
    sealer: &SecretBox,
    user: &service::User,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<Option<bool>> {
    match (code, recovery_code) {
        (Some(c), None) => Ok(Some(
            mfa::check_code(db, sealer, user.id, &user.username, c).await?,
        )),
        (None, Some(r)) => Ok(Some(mfa::use_recovery_code(db, user.id, r).await?)),
        _ => Ok(None),
    }
}

/// Remove the caller's second factor: the password and a code (or a
/// recovery code). The account's other sessions end.
#[utoipa::path(delete, path = "/me/mfa/totp", tag = "mfa", request_body = DisableRequest, security(("gateway_proof" = [])),
    responses(
        (status = 204, description = "Removed: logins need the password only; the recovery codes are gone"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The password or the code is wrong (it counts toward the login lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No second factor is active", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not exactly one of `code` and `recovery_code`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed checks for this account (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disable(
    caller: Caller,
    req: HttpRequest,
    db: Db,
    hasher: Hasher,
    sealer: Sealer,
    audit: Audit,
    body: web::Json<DisableRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    one_of(&body.code, &body.recovery_code)?;
    if let Some(res) = locked(&req) {
        return Ok(res);
    }
    let user = own_account(db.get_ref(), &caller).await?;
    if mfa::state(db.get_ref(), caller.id).await? != State::Active {
        return Err(Error::MfaNotEnabled);
    }
    let stored = service::password_hash(db.get_ref(), caller.id).await?;
    if !hasher.verify(body.current_password, Some(stored)).await? {
        return Ok(refused("the current password is incorrect"));
    }
    let passed = second_factor(
        db.get_ref(),
        &sealer,
        &user,
        body.code.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await?;
    if passed != Some(true) {
        return Ok(refused("the code is not valid"));
    }
    mfa::remove(db.get_ref(), caller.id).await?;
    audit.record(
        Event::new("mfa.disabled", "success")
            .actor(Some(caller.id))
            .subject(caller.id.to_string())
            .client(client(&req))
            .detail("the account's second factor was removed; the other sessions end"),
    );
    let mut res = HttpResponse::NoContent().finish();
    verdict(&mut res, true);
    end_sessions(&mut res, caller.id, true);
    Ok(res)
}

/// Replace the recovery codes (a code from the app proves the caller has
/// it); the old ones stop working.
#[utoipa::path(post, path = "/me/mfa/recovery-codes", tag = "mfa", request_body = CodeRequest, security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "Ten new one-time recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The code is wrong or was used already (it counts toward the login lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No second factor is active", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed checks for this account (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn new_recovery_codes(
    caller: Caller,
    req: HttpRequest,
    db: Db,
    sealer: Sealer,
    audit: Audit,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse> {
    if let Some(res) = locked(&req) {
        return Ok(res);
    }
    let user = own_account(db.get_ref(), &caller).await?;
    if !mfa::check_code(db.get_ref(), &sealer, caller.id, &user.username, &body.code).await? {
        return Ok(refused("the code is not valid"));
    }
    let codes = mfa::replace_recovery_codes(db.get_ref(), caller.id).await?;
    audit.record(
        Event::new("mfa.recovery_codes_replaced", "success")
            .actor(Some(caller.id))
            .subject(caller.id.to_string())
            .client(client(&req)),
    );
    let mut res = HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    });
    verdict(&mut res, true);
    no_store(&mut res);
    Ok(res)
}

/// Reset a user's second factor (admin), for a user who lost the device
/// and the recovery codes: the TOTP and the codes are removed and every
/// session of the account ends at once.
#[utoipa::path(delete, path = "/users/{id}/mfa", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 204, description = "Removed (or there was none); the user's sessions are ended"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset(
    Admin(admin): Admin,
    req: HttpRequest,
    db: Db,
    audit: Audit,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    service::get(db.get_ref(), id).await?;
    let removed = mfa::remove(db.get_ref(), id).await?;
    audit.record(
        Event::new("mfa.reset", "success")
            .actor(Some(admin.id))
            .subject(id.to_string())
            .client(client(&req))
            .detail(if removed {
                "an admin removed the user's second factor; their sessions end"
            } else {
                "the user had no second factor; their sessions end"
            }),
    );
    let mut res = HttpResponse::NoContent().finish();
    end_sessions(&mut res, id, false);
    Ok(res)
}

/// Check the second step of a login (gateway only): a code of the user's
/// active TOTP (never one accepted before) or an unused recovery code, of
/// an active account. 401 for a wrong code, an account without a second
/// factor or an inactive one, alike.
#[utoipa::path(post, path = "/internal/mfa/verify", tag = "internal", request_body = MfaVerifyRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The code is right: the user's identity", body = UserIdentity),
        (status = 401, description = "Wrong, reused or expired code; no second factor; inactive account; or no valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The proof is a user's, not the gateway's", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not exactly one of `code` and `recovery_code`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    _gateway: GatewayCall,
    req: HttpRequest,
    db: Db,
    sealer: Sealer,
    audit: Audit,
    body: web::Json<MfaVerifyRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    one_of(&body.code, &body.recovery_code)?;
    let wrong = || Problem::unauthorized("the code is not valid").to_response();
    let user = match service::get(db.get_ref(), body.user_id).await {
        Ok(u) if u.is_active && u.mfa => u,
        Ok(_) | Err(Error::NotFound) => return Ok(wrong()),
        Err(e) => return Err(e),
    };
    let passed = match second_factor(
        db.get_ref(),
        &sealer,
        &user,
        body.code.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await
    {
        Ok(p) => p == Some(true),
        Err(Error::MfaNotEnabled) => false,
        Err(e) => return Err(e),
    };
    if !passed {
        return Ok(wrong());
    }
    if body.recovery_code.is_some() {
        let left = mfa::recovery_codes_left(db.get_ref(), user.id).await?;
        audit.record(
            Event::new("mfa.recovery_code_used", "success")
                .actor(Some(user.id))
                .subject(user.id.to_string())
                .client(client(&req))
                .detail(format!("a recovery code signed in; {left} left")),
        );
    }
    Ok(HttpResponse::Ok().json(UserIdentity::from(user)))
}
