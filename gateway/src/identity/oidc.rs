//! The OpenID provider's token side: the `authorization_code` and
//! `refresh_token` grants of `POST /api/oauth/token` (with ID tokens),
//! `GET`/`POST /oauth/userinfo`, and RFC 7009 revocation
//! (`POST /api/oauth/revoke`).
//!
//! A confidential application authenticates as a machine client does
//! (`client_secret_basic` or `client_secret_post`, the same lockout); a
//! public one names its `client_id` and proves the code with its PKCE
//! verifier. A code is spent once; a second use revokes the session it
//! issued. Refresh tokens rotate with reuse detection, as `/api/refresh`'s,
//! and are bound to the application they were issued to.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use common::audit::Event;
use serde_json::{Map, Value, json};

use super::Identity;
use crate::identity::admission::Bearer;
use crate::identity::apps::{AUTHORIZATION_CODE, REFRESH_TOKEN};
use crate::identity::caller::client_ip;
use crate::identity::clients::Client;
use crate::identity::codes::{self, Refused};
use crate::identity::oauth_wire::{Form, OAuthError, authenticate_client, credentials, no_store};
use crate::identity::sessions::{AppSession, Issued, SessionError, Started};
use crate::identity::tokens::AccessClaims;
use crate::identity::users_api::Account;

/// The application a token request comes from: a confidential one by its
/// secret, a public one by its `client_id` alone.
pub(crate) async fn app_client(
    req: &HttpRequest,
    gw: &Identity,
    form: &Form,
    endpoint: &'static str,
) -> Result<Client, OAuthError> {
    let has_secret =
        form.get("client_secret").is_some() || req.headers().contains_key(header::AUTHORIZATION);
    if has_secret {
        let creds = credentials(req.headers(), form)?;
        let (client, _) = authenticate_client(req, gw, &creds, endpoint).await?;
        return Ok(client);
    }
    let id = form.get("client_id").ok_or_else(|| {
        OAuthError::invalid_client(
            "client authentication is required (or client_id for a public client)",
        )
    })?;
    match gw.clients.find(id).await {
        Ok(Some(c)) if c.active && c.app.public => Ok(c),
        Ok(_) => Err(OAuthError::invalid_client(
            "unknown client, inactive, or a confidential client without its secret",
        )),
        Err(e) => {
            tracing::error!(error = %e, "reading the client registry failed");
            Err(OAuthError::server_error())
        }
    }
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::invalid_grant(description)
}

/// The account, re-read so changes apply now: `Ok(None)` when it is gone
/// or inactive.
async fn account(gw: &Identity, user: uuid::Uuid) -> Result<Option<Account>, OAuthError> {
    crate::identity::users_api::active_account(gw, user)
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("the users service is unavailable"))
}

/// `grant_type=authorization_code`.
pub(crate) async fn code_grant(
    req: &HttpRequest,
    gw: &Identity,
    form: &Form,
) -> Result<HttpResponse, OAuthError> {
    let client = app_client(req, gw, form, "token").await?;
    if !client.app.allows(AUTHORIZATION_CODE) {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for authorization_code",
        ));
    }
    let need = |name: &str| {
        form.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    };
    let code = need("code")?;
    let redirect_uri = need("redirect_uri")?;
    let verifier = need("code_verifier")?;
    let ip = client_ip(req).map(|a| a.to_string());
    let (code_id, grant) = match gw.codes.spend(code).await.map_err(store_failed)? {
        Ok(g) => g,
        Err(Refused::Reused(family)) => {
            let family = match family {
                Some(f) => Some(f),
                None => gw.codes.family_of_spent(code).await.map_err(store_failed)?,
            };
            if let Some(f) = family {
                let denied = gw.sessions.revoke_family(f).await.map_err(store_failed)?;
                gw.revocations.announce(&[denied]).await;
            }
            gw.audit.record(
                Event::new("oauth.code.reused", "refused")
                    .subject(client.client_id.clone())
                    .client(ip)
                    .detail("an authorization code was presented again; what it issued is revoked"),
            );
            return Err(invalid_grant(
                "the code was used before; what it issued is revoked",
            ));
        }
        Err(_) => return Err(invalid_grant("the code is unknown or expired")),
    };
    if grant.client != client.id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if !codes::verifier_matches(verifier, &grant.code_challenge) {
        return Err(invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let Some(acct) = account(gw, grant.user_id).await? else {
        return Err(invalid_grant("the account is no longer active"));
    };
    let app = AppSession {
        client: client.id,
        scope: grant.scope.clone(),
        browser_session: grant.browser_session,
        auth_time: grant.auth_time,
    };
    let (started, issued) = gw
        .sessions
        .start_for_app(acct.id, &grant.amr, app)
        .await
        .map_err(store_failed)?;
    gw.codes
        .exchanged(code_id, started.id)
        .await
        .map_err(store_failed)?;
    gw.audit.record(
        Event::new("oauth.code.exchanged", "success")
            .actor(Some(acct.id))
            .subject(client.client_id.clone())
            .client(ip)
            .detail(format!("scope: {}", grant.scope)),
    );
    let scopes: Vec<String> = grant.scope.split(' ').map(str::to_owned).collect();
    let minted = Minted {
        client: &client,
        account: &acct,
        session: &started,
        browser_session: grant.browser_session,
        scopes: &scopes,
        nonce: grant.nonce.as_deref(),
    };
    respond(gw, &minted, issued)
}

/// `grant_type=refresh_token` for an application.
pub(crate) async fn refresh_grant(
    req: &HttpRequest,
    gw: &Identity,
    form: &Form,
) -> Result<HttpResponse, OAuthError> {
    let client = app_client(req, gw, form, "token").await?;
    if !client.app.allows(REFRESH_TOKEN) {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for refresh_token",
        ));
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let found = gw
        .sessions
        .find(token)
        .await
        .map_err(store_failed)?
        .filter(|f| f.family.client_id == Some(client.id))
        .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
    let granted: Vec<String> = found
        .family
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // A narrower scope may be asked for (RFC 6749 section 6), never a wider.
    let scopes = match form.get("scope") {
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(s) = asked.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("`{s}` was not granted")));
            }
            asked
        }
        None => granted,
    };
    let ip = client_ip(req).map(|a| a.to_string());
    let Some(acct) = account(gw, found.family.user_id).await? else {
        let denied = gw
            .sessions
            .revoke_family(found.family.id)
            .await
            .map_err(store_failed)?;
        gw.revocations.announce(&[denied]).await;
        return Err(invalid_grant("the account is no longer active"));
    };
    match gw.sessions.spend(&found).await {
        Ok(()) => {}
        Err(SessionError::Db(e)) => return Err(store_failed(e)),
        Err(SessionError::Reused(d)) => {
            gw.revocations.announce(std::slice::from_ref(&d)).await;
            gw.audit.record(
                Event::new("refresh.reuse", "refused")
                    .subject(acct.id.to_string())
                    .client(ip)
                    .detail("a spent refresh token was presented again; its session is revoked"),
            );
            return Err(invalid_grant(
                "the refresh token was used before; its session is revoked",
            ));
        }
        Err(e) => return Err(invalid_grant(&e.to_string())),
    }
    let issued = match gw.sessions.continue_family(found.family.id).await {
        Ok(i) => i,
        Err(SessionError::Db(e)) => return Err(store_failed(e)),
        Err(e) => return Err(invalid_grant(&e.to_string())),
    };
    gw.audit.record(
        Event::new("refresh.success", "success")
            .actor(Some(acct.id))
            .subject(client.client_id.clone())
            .client(ip),
    );
    let started = Started::of(&found.family);
    let minted = Minted {
        client: &client,
        account: &acct,
        session: &started,
        browser_session: found.family.browser_session_id.unwrap_or_default(),
        scopes: &scopes,
        nonce: None,
    };
    respond(gw, &minted, issued)
}

fn store_failed(e: sea_orm::DbErr) -> OAuthError {
    tracing::error!(error = %e, "the session store failed");
    OAuthError::temporarily_unavailable("the session store cannot be reached; retry")
}

/// What a token response is minted for.
struct Minted<'a> {
    client: &'a Client,
    account: &'a Account,
    session: &'a Started,
    browser_session: uuid::Uuid,
    scopes: &'a [String],
    nonce: Option<&'a str>,
}

impl Minted<'_> {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The access token, the refresh token (for a client registered for
/// them) and the ID token (when `openid` was granted), never cached.
fn respond(gw: &Identity, m: &Minted<'_>, refresh: Issued) -> Result<HttpResponse, OAuthError> {
    let (jti, now) = crate::identity::sessions::new_token_id();
    let acr = crate::identity::tokens::acr_of(&m.session.amr);
    // A third-party application acts through its scopes alone: its
    // tokens carry none of the user's roles.
    let roles = if m.client.app.first_party {
        m.account.roles.clone()
    } else {
        Vec::new()
    };
    let claims = AccessClaims {
        iss: String::new(),
        aud: String::new(),
        sub: m.account.id.to_string(),
        exp: now + gw.access_ttl_secs,
        iat: now,
        nbf: now,
        jti,
        sid: m.session.id.to_string(),
        scope: Some(m.scopes.join(" ")),
        client_id: None,
        azp: Some(m.client.client_id.clone()),
        roles,
        username: m.account.username.clone(),
        amr: m.session.amr.clone(),
        acr: Some(acr.to_owned()),
        auth_time: Some(m.session.auth_time),
        extra: Default::default(),
    };
    let live = gw.live.load();
    let signing = |e: crate::identity::tokens::TokenError| {
        tracing::error!(error = %e, "signing a token failed");
        OAuthError::server_error()
    };
    let access_token = live.tokens.sign(claims).map_err(signing)?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": gw.access_ttl_secs,
        "scope": m.scopes.join(" "),
    });
    if m.client.app.allows(REFRESH_TOKEN) {
        body["refresh_token"] = json!(refresh.token);
    }
    if m.has("openid") {
        let mut id = profile_claims(m.account, m.scopes);
        id.insert("aud".into(), json!(m.client.client_id));
        id.insert("azp".into(), json!(m.client.client_id));
        id.insert("exp".into(), json!(now + gw.access_ttl_secs));
        id.insert("iat".into(), json!(now));
        id.insert("auth_time".into(), json!(m.session.auth_time));
        id.insert("amr".into(), json!(m.session.amr));
        id.insert("acr".into(), json!(acr));
        id.insert("sid".into(), json!(m.browser_session.to_string()));
        id.insert("at_hash".into(), json!(live.tokens.at_hash(&access_token)));
        if let Some(n) = m.nonce {
            id.insert("nonce".into(), json!(n));
        }
        body["id_token"] = json!(live.tokens.sign_id_token(id).map_err(signing)?);
    }
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(body))
}

/// `sub` and the claims `scopes` allow (OpenID Connect Core 5.4).
fn profile_claims(a: &Account, scopes: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("sub".into(), json!(a.id.to_string()));
    if scopes.iter().any(|s| s == "profile") {
        out.insert("preferred_username".into(), json!(a.username));
        if let Some(n) = &a.full_name {
            out.insert("name".into(), json!(n));
        }
    }
    if scopes.iter().any(|s| s == "email")
        && let Some(e) = &a.email
    {
        out.insert("email".into(), json!(e));
        // Gatehouse does not verify addresses (yet).
        out.insert("email_verified".into(), json!(false));
    }
    out
}

/// A userinfo refusal (RFC 6750 section 3).
fn bearer_error(
    status: actix_web::http::StatusCode,
    error: &str,
    description: &str,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    no_store(&mut res);
    res.insert_header((
        header::WWW_AUTHENTICATE,
        format!(
            "Bearer realm=\"gatehouse\", error=\"{error}\", error_description=\"{description}\""
        ),
    ));
    res.json(json!({"error": error, "error_description": description}))
}

/// `GET`/`POST /oauth/userinfo` (OpenID Connect Core 5.3): the claims of
/// the token's user that its scopes allow.
#[utoipa::path(get, operation_id = "userinfo", path = "/oauth/userinfo", summary = "OpenID Connect userinfo", tag = "oidc",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`sub`, and by scope `preferred_username`, `name` (profile), `email`, `email_verified` (email)", body = Object),
        (status = 401, description = "Missing, invalid, expired or revoked access token, or the account is no longer active (`WWW-Authenticate: Bearer error=\"invalid_token\"`)", body = Object),
        (status = 403, description = "`insufficient_scope`: the token was not granted `openid`", body = Object),
        (status = 503, description = "The users service is unavailable", body = Object),
    ))]
pub async fn userinfo(Bearer(caller): Bearer, gw: web::Data<Identity>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let c = caller.claims();
    if c.iss != gw.live.load().tokens.issuer() || !caller.has_scope("openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token was not granted openid",
        );
    }
    match crate::identity::users_api::active_account(&gw, caller.id()).await {
        Ok(Some(a)) => {
            let scopes: Vec<String> = c
                .scope
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .map(str::to_owned)
                .collect();
            let mut res = HttpResponse::Ok();
            no_store(&mut res);
            res.json(Value::Object(profile_claims(&a, &scopes)))
        }
        Ok(None) => bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the account is no longer active",
        ),
        Err(res) => res,
    }
}

/// `POST /api/oauth/revoke` (RFC 7009).
#[utoipa::path(post, operation_id = "oauth_revoke", path = "/api/oauth/revoke", summary = "Revoke a token (RFC 7009)", tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object,
        description = "`token` (a refresh token: its whole session ends; or an access token issued to this client), optional `token_type_hint`; a confidential client authenticates, a public one sends `client_id`"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (an unknown token, or another client's): the same answer"),
        (status = 400, description = "`invalid_request`", body = crate::identity::oauth_wire::OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = crate::identity::oauth_wire::OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = crate::identity::oauth_wire::OAuthErrorBody),
    ))]
pub async fn revoke(req: HttpRequest, gw: web::Data<Identity>, body: web::Bytes) -> HttpResponse {
    match revocation(&req, &gw, &body).await {
        Ok(()) => {
            let mut res = HttpResponse::Ok();
            no_store(&mut res);
            res.finish()
        }
        Err(e) => e.to_response(),
    }
}

async fn revocation(req: &HttpRequest, gw: &Identity, body: &[u8]) -> Result<(), OAuthError> {
    let form = Form::parse(req, body)?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_owned();
    let client = app_client(req, gw, &form, "revoke").await?;
    let mut denied = Vec::new();
    if let Some(found) = gw.sessions.find(&token).await.map_err(store_failed)? {
        if found.family.client_id == Some(client.id) {
            denied.push(
                gw.sessions
                    .revoke_family(found.family.id)
                    .await
                    .map_err(store_failed)?,
            );
        }
    } else if let Ok(c) = gw.live.load().tokens.verify(&token) {
        let mine = c.azp.as_deref() == Some(client.client_id.as_str())
            || c.client_id.as_deref() == Some(client.client_id.as_str());
        if mine {
            denied.push(
                gw.sessions
                    .revoke_access(&c.jti, c.exp)
                    .await
                    .map_err(store_failed)?,
            );
        }
    }
    if !denied.is_empty() {
        gw.revocations.announce(&denied).await;
        gw.audit.record(
            Event::new("oauth.revoked", "success")
                .subject(client.client_id.clone())
                .client(client_ip(req).map(|a| a.to_string())),
        );
    }
    Ok(())
}
