//! The gateway's own token endpoints: login, refresh, logout, JWKS.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use common::audit::Event;

use super::Identity;
use crate::identity::admission::Bearer;
use crate::identity::caller::client_ip;
use crate::identity::login_limits;
use crate::identity::sessions::{Found, Issued, SessionError, Started};
use crate::identity::sign_in::{self, Code, Failure, Passed};
use crate::identity::tokens::AccessClaims;
use crate::identity::users_api::{Account, users_unavailable};
use crate::traffic::ratelimit::{self, Decision};

/// `POST /api/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "admin")]
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// `POST /api/refresh` and the body of `POST /api/logout`.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The opaque refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// The token pair.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

/// Sign an access token for `identity` in `session` and answer with the
/// pair. The token says how the session's login authenticated (`amr`,
/// `acr`) and when (`auth_time`).
fn token_pair(
    gw: &Identity,
    identity: &Account,
    session: &Started,
    refresh: Issued,
) -> HttpResponse {
    let (jti, now) = crate::identity::sessions::new_token_id();
    let claims = AccessClaims {
        iss: String::new(),
        aud: String::new(),
        sub: identity.id.to_string(),
        exp: now + gw.access_ttl_secs,
        iat: now,
        nbf: now,
        jti,
        sid: session.id.to_string(),
        scope: None,
        client_id: None,
        roles: identity.roles.clone(),
        username: identity.username.clone(),
        amr: session.amr.clone(),
        acr: Some(crate::identity::tokens::acr_of(&session.amr).to_owned()),
        auth_time: Some(session.auth_time),
        azp: None,
        extra: Default::default(),
    };
    match gw.live.load().tokens.sign(claims) {
        Ok(access_token) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(TokenResponse {
                access_token,
                token_type: "Bearer".into(),
                expires_in: gw.access_ttl_secs,
                refresh_token: refresh.token,
                // To the nearest second, counted in milliseconds: the expiry
                // was set a moment ago, and either instant may sit on either
                // side of a second boundary.
                refresh_expires_in: ((refresh.expires_at - chrono::Utc::now()).num_milliseconds()
                    + 500)
                    .div_euclid(1000)
                    .max(0),
            }),
        Err(e) => {
            tracing::error!(error = %e, "signing an access token failed");
            Problem::internal().to_response()
        }
    }
}

fn internal(e: sea_orm::DbErr) -> HttpResponse {
    tracing::error!(error = %e, "session store error");
    common::db::problem(&e).to_response()
}

/// The answer to a step that did not sign in (see [`Failure`]).
pub(crate) fn refused(gw: &Identity, failure: Failure) -> HttpResponse {
    match failure {
        Failure::RateLimited(decision) => match &gw.login_quota {
            Some(quota) => ratelimit::refused(
                &decision,
                quota,
                "login",
                "logins from one address are limited to",
            ),
            None => users_unavailable(),
        },
        Failure::Locked(secs) => login_limits::refused(secs),
        Failure::Wrong => Problem::unauthorized("invalid username or password").to_response(),
        Failure::WrongCode => {
            Problem::new(StatusCode::UNAUTHORIZED, "invalid-code", "Unauthorized")
                .with_detail("the code is not valid, or was used before")
                .to_response()
        }
        Failure::BadChallenge(why) => invalid_challenge(why),
        Failure::Malformed => {
            Problem::malformed_body("username and password are required").to_response()
        }
        Failure::Unavailable => users_unavailable(),
        Failure::Dependency(res) => res,
        Failure::Store(e) => internal(e),
    }
}

/// `POST /api/login`: credentials checked by the users service; a token pair
/// on success. Failures count per username and per client IP.
#[utoipa::path(post, path = "/api/login", summary = "Log in: a token pair", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "A token pair: a short-lived access JWT and a single-use refresh token", body = TokenResponse),
        (status = 401, description = "Wrong username or password (the same answer for an unknown user); or, type `mfa-required`, the password is right and the account has a second factor: the answer carries a `challenge` for `POST /api/login/mfa`", body = MfaRequired, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON or missing fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this username or address; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The users service is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Json<LoginRequest>,
) -> HttpResponse {
    let ip = client_ip(&req).map(|a| a.to_string()).unwrap_or_default();
    match sign_in::password(&gw, "/api/login", &ip, &body.username, &body.password).await {
        Ok(Passed::SecondFactor {
            challenge,
            expires_in,
        }) => mfa_required(challenge, expires_in),
        Ok(Passed::Done(identity, amr)) => match gw.sessions.start(identity.id, amr).await {
            Ok((session, issued)) => token_pair(&gw, &identity, &session, issued),
            Err(e) => internal(e),
        },
        Err(f) => refused(&gw, f),
    }
}

/// A login's 401: a problem; the one of a right password on an account
/// with a second factor (type `mfa-required`) carries the challenge the
/// second step (`POST /api/login/mfa`) takes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:gatehouse:problem:mfa-required",
    "title": "Second factor required",
    "status": 401,
    "detail": "the password is right; send a code from the authenticator app (or a recovery code) with this challenge to POST /api/login/mfa",
    "challenge": "q3b2X0y6mC8...",
    "challenge_expires_in": 300,
    "methods": ["totp", "recovery_code"]
}))]
pub struct MfaRequired {
    #[serde(flatten)]
    pub problem: Problem,
    /// `mfa-required` only: for `POST /api/login/mfa`, good once, for
    /// this client, for `challenge_expires_in` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_expires_in: Option<i64>,
    /// `mfa-required` only: what the second step accepts, `totp` (a code)
    /// or `recovery_code`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

fn mfa_required(challenge: String, expires_in: i64) -> HttpResponse {
    let body = MfaRequired {
        problem: Problem::new(
            StatusCode::UNAUTHORIZED,
            "mfa-required",
            "Second factor required",
        )
        .with_detail(
            "the password is right; send a code from the authenticator app (or a recovery \
             code) with this challenge to POST /api/login/mfa",
        )
        .identified(),
        challenge: Some(challenge),
        challenge_expires_in: Some(expires_in),
        methods: vec!["totp".into(), "recovery_code".into()],
    };
    HttpResponse::Unauthorized()
        .content_type(common::problem::PROBLEM_JSON)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `POST /api/login/mfa`: the challenge of the first step and one code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    /// The `challenge` of the `mfa-required` answer.
    pub challenge: String,
    /// Six digits from the authenticator app; or
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// one of the account's recovery codes (each works once).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// The 422 of a second step with both or neither of `code` and `recovery_code`.
fn one_code_required() -> HttpResponse {
    Problem::validation(vec![common::FieldError::new(
        "code",
        "required",
        "give either a code from the authenticator app or a recovery code",
    )])
    .to_response()
}

/// The 401 of a challenge that admits no second step (`detail`: why; log in again).
fn invalid_challenge(detail: &str) -> HttpResponse {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-challenge",
        "Unauthorized",
    )
    .with_detail(detail)
    .to_response()
}

/// `POST /api/login/mfa`: the second step of a login with a second factor.
/// The challenge must be this client's, unused and unexpired; the code is
/// one the account has not used before (or an unused recovery code). Wrong
/// codes count toward the same per-user and per-address lockout as wrong
/// passwords. Tokens say `amr: ["pwd", "otp"]`.
#[utoipa::path(post, path = "/api/login/mfa", summary = "Log in, second step: a code for the challenge", tag = "auth", request_body = MfaLoginRequest,
    responses(
        (status = 200, description = "A token pair whose access token carries `amr: [\"pwd\", \"otp\"]`", body = TokenResponse),
        (status = 401, description = "The challenge is unknown, expired, used or another client's (`invalid-challenge`: log in again), or the code is wrong or was used before (`invalid-code`), or the account was deactivated", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON, or not exactly one of `code` and `recovery_code`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed checks for this account or address; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The users service is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login_mfa(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Json<MfaLoginRequest>,
) -> HttpResponse {
    let body = body.into_inner();
    let code = match (body.code, body.recovery_code) {
        (Some(c), None) => Code::Totp(c),
        (None, Some(c)) => Code::Recovery(c),
        _ => return one_code_required(),
    };
    let ip = client_ip(&req).map(|a| a.to_string()).unwrap_or_default();
    match sign_in::second_factor(&gw, "/api/login/mfa", &ip, &body.challenge, code).await {
        Ok((identity, amr)) => match gw.sessions.start(identity.id, amr).await {
            Ok((session, issued)) => token_pair(&gw, &identity, &session, issued),
            Err(e) => internal(e),
        },
        Err(f) => refused(&gw, f),
    }
}

fn refresh_refused(detail: &str) -> HttpResponse {
    Problem::unauthorized(detail).to_response()
}

/// End an inactive account's session (`family`) on every replica; answers the 401.
async fn end_inactive(gw: &Identity, family: Uuid, user: Uuid, ip: Option<String>) -> HttpResponse {
    match gw.sessions.revoke_family(family).await {
        Ok(d) => gw.revocations.announce(&[d]).await,
        Err(e) => return internal(e),
    };
    gw.audit.record(
        Event::new("refresh.refused", "refused")
            .subject(user.to_string())
            .client(ip)
            .detail("the account is no longer active; its session ends"),
    );
    refresh_refused("the account is no longer active")
}

/// Spend the refresh token; one spent before revokes its whole session. `Err`: the 401 or 500.
async fn spend_refresh(
    gw: &Identity,
    found: &Found,
    user: Uuid,
    ip: Option<String>,
) -> Result<(), HttpResponse> {
    match gw.sessions.spend(found).await {
        Ok(()) => Ok(()),
        Err(SessionError::Db(e)) => Err(internal(e)),
        Err(SessionError::Reused(d)) => {
            // Every access token of the session stops working too.
            gw.revocations.announce(std::slice::from_ref(&d)).await;
            gw.audit.record(
                Event::new("refresh.reuse", "refused")
                    .subject(user.to_string())
                    .client(ip)
                    .detail("a spent refresh token was presented again; its session is revoked"),
            );
            Err(refresh_refused(&SessionError::Reused(d).to_string()))
        }
        Err(e) => Err(refresh_refused(&e.to_string())),
    }
}

/// `POST /api/refresh`: rotate. The user is re-read first, so deactivation
/// and role changes apply now; a spent token revokes its whole family.
#[utoipa::path(post, path = "/api/refresh", summary = "Rotate the refresh token: a new pair", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair; the presented refresh token is spent", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or already spent refresh token (reuse revokes the whole session), or the account is no longer active", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON or missing fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many refreshes from this address; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The users service is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Json<RefreshRequest>,
) -> HttpResponse {
    if let Some(quota) = &gw.refresh_quota {
        let ip = client_ip(&req).map(|a| a.to_string()).unwrap_or_default();
        let decision = gw.limiter.check(&format!("refresh|ip:{ip}"), quota).await;
        if let Decision::Deny { .. } = decision {
            gw.metrics.rate_limited("/api/refresh");
            return ratelimit::refused(
                &decision,
                quota,
                "refresh",
                "refreshes from one address are limited to",
            );
        }
    }
    let found = match gw.sessions.find(&body.refresh_token).await {
        Ok(Some(f)) => f,
        Ok(None) => return refresh_refused("the refresh token is invalid"),
        Err(e) => return internal(e),
    };
    if found.family.client_id.is_some() {
        // An application's refresh token is bound to it: it refreshes at
        // the token endpoint, authenticated as that application.
        return refresh_refused("the refresh token is invalid");
    }
    let ip = client_ip(&req).map(|a| a.to_string());
    let user = found.family.user_id;
    let identity = match crate::identity::users_api::active_account(&gw, user).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let Some(identity) = identity else {
        return end_inactive(&gw, found.family.id, user, ip).await;
    };
    if let Err(res) = spend_refresh(&gw, &found, user, ip.clone()).await {
        return res;
    }
    match gw.sessions.continue_family(found.family.id).await {
        Ok(issued) => {
            gw.audit.record(
                Event::new("refresh.success", "success")
                    .actor(Some(user))
                    .subject(user.to_string())
                    .client(ip),
            );
            token_pair(&gw, &identity, &Started::of(&found.family), issued)
        }
        Err(SessionError::Db(e)) => internal(e),
        Err(e) => refresh_refused(&e.to_string()),
    }
}

/// `POST /api/logout`: ends the caller's session: its refresh tokens and
/// every access token issued in it (not only the one presented) are refused
/// at once, on every replica (the answer waits until the replicas that Redis
/// reaches have applied it).
#[utoipa::path(post, path = "/api/logout", summary = "Log out: revoke the session and this access token", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session and every access token issued in it are revoked, on every replica"),
        (status = 401, description = "Missing, invalid, expired or revoked access token", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON or missing fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    Bearer(caller): Bearer,
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Json<RefreshRequest>,
) -> HttpResponse {
    let mut denied = Vec::new();
    // The session the access token belongs to, and the one the refresh
    // token names if it is the caller's (normally the same).
    let mut sessions: Vec<Uuid> = Uuid::parse_str(caller.session_id()).into_iter().collect();
    match gw.sessions.find(&body.refresh_token).await {
        Ok(Some(f)) if f.family.user_id == caller.id() && !sessions.contains(&f.family.id) => {
            sessions.push(f.family.id);
        }
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    for sid in sessions {
        match gw.sessions.revoke_family(sid).await {
            Ok(d) => denied.push(d),
            Err(e) => return internal(e),
        }
    }
    match gw
        .sessions
        .revoke_access(caller.token_id(), caller.expires_at())
        .await
    {
        Ok(d) => denied.push(d),
        Err(e) => return internal(e),
    }
    // Tell the other replicas before answering; they also catch up from
    // the database.
    gw.revocations.announce(&denied).await;
    gw.audit.record(
        Event::new("logout", "success")
            .actor(Some(caller.id()))
            .subject(caller.id().to_string())
            .client(client_ip(&req).map(|a| a.to_string())),
    );
    HttpResponse::NoContent().finish()
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", summary = "The public keys that verify access tokens", tag = "auth",
    responses(
        (status = 200, description = "The JSON Web Key Set (`Cache-Control: public, max-age=300`)", body = crate::identity::tokens::JwkSet, content_type = "application/jwk-set+json"),
    ))]
pub async fn jwks(gw: web::Data<Identity>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .json(gw.live.load().tokens.jwks())
}
