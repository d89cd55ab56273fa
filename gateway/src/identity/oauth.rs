//! The gateway as an OAuth 2.0 authorization server for machine clients:
//! the token endpoint (client credentials, RFC 6749 section 4.4), token
//! introspection (RFC 7662) and the metadata other parties discover it by
//! (RFC 8414, and the OpenID Connect discovery document).
//!
//! These endpoints speak OAuth, not problem+json: form-encoded requests,
//! and errors as RFC 6749 section 5.2 says (`{"error", "error_description"}`,
//! `invalid_client` as a 401 with a `Basic` challenge), never cached.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use common::audit::Event;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::Identity;
use crate::identity::caller;
use crate::identity::caller::client_ip;
pub use crate::identity::oauth_wire::{AUTH_METHODS, Form, OAuthError, OAuthErrorBody};
use crate::identity::oauth_wire::{authenticate_client, credentials, no_store};
use crate::identity::tokens::AccessClaims;

pub use crate::identity::apps::{AUTHORIZATION_CODE, CLIENT_CREDENTIALS, REFRESH_TOKEN};
/// The scopes to grant: those asked for (each allowed to the client), or
/// every allowed one when none are asked for (RFC 6749 section 3.3).
pub fn granted_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !crate::traffic::routes::is_valid_scope(s) {
            return Err(OAuthError::invalid_scope(format!(
                "`{s}` is not a valid scope"
            )));
        }
        if !allowed.iter().any(|a| a == s) {
            return Err(OAuthError::invalid_scope(format!(
                "the client may not be granted `{s}`"
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// A successful token response (RFC 6749 section 5.1); no refresh token.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ClientTokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    pub expires_in: i64,
    /// The granted scopes, space-separated.
    #[schema(example = "orders:read orders:write")]
    pub scope: String,
}

/// `POST /api/oauth/token`.
#[utoipa::path(post, operation_id = "oauth_token", path = "/api/oauth/token", summary = "Client credentials: an access token for a machine client", tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object,
        description = "`grant_type=client_credentials`, optional `scope` (space-separated, a subset of the client's); the client authenticates with HTTP Basic (`client_secret_basic`) or `client_id` and `client_secret` in the form (`client_secret_post`)"),
    responses(
        (status = 200, description = "A short-lived access token (no refresh token; `Cache-Control: no-store`)", body = ClientTokenResponse),
        (status = 400, description = "`invalid_request` (not a form, a repeated parameter, two authentication methods), `unsupported_grant_type`, `invalid_scope`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: unknown client, wrong secret, inactive client, or no authentication (with `WWW-Authenticate: Basic`)", body = OAuthErrorBody),
        (status = 429, description = "Too many failed client authentications for this client or address; see `Retry-After`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the client registry cannot be read", body = OAuthErrorBody),
    ))]
pub async fn token(req: HttpRequest, gw: web::Data<Identity>, body: web::Bytes) -> HttpResponse {
    match issue(&req, &gw, &body).await {
        Ok(res) => res,
        Err(e) => e.to_response(),
    }
}

async fn issue(req: &HttpRequest, gw: &Identity, body: &[u8]) -> Result<HttpResponse, OAuthError> {
    let form = Form::parse(req, body)?;
    match form.get("grant_type") {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some(CLIENT_CREDENTIALS) => {}
        Some(AUTHORIZATION_CODE) => return crate::identity::oidc::code_grant(req, gw, &form).await,
        Some(REFRESH_TOKEN) => return crate::identity::oidc::refresh_grant(req, gw, &form).await,
        Some(other) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "`{other}` is not supported: use client_credentials, authorization_code or refresh_token"
            )));
        }
    }
    let creds = credentials(req.headers(), &form)?;
    let (client, secret_id) = authenticate_client(req, gw, &creds, "token").await?;
    if !client.app.allows(CLIENT_CREDENTIALS) {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for client_credentials",
        ));
    }
    let ip = client_ip(req).map(|a| a.to_string());
    let scopes = match granted_scopes(form.get("scope"), &client.scopes) {
        Ok(s) => s,
        Err(e) => {
            gw.audit.record(
                Event::new("oauth.token", "refused")
                    .actor(Some(client.id))
                    .subject(client.client_id.clone())
                    .client(ip)
                    .detail(e.description().to_owned()),
            );
            return Err(e);
        }
    };
    let (jti, now) = crate::identity::sessions::new_token_id();
    let scope = scopes.join(" ");
    let claims = AccessClaims {
        iss: String::new(),
        aud: String::new(),
        sub: client.id.to_string(),
        exp: now + gw.client_ttl_secs,
        iat: now,
        nbf: now,
        jti,
        sid: client.token_sid(secret_id),
        scope: (!scope.is_empty()).then(|| scope.clone()),
        client_id: Some(client.client_id.clone()),
        roles: client.roles.clone(),
        username: client.client_id.clone(),
        amr: Vec::new(),
        acr: None,
        auth_time: None,
        azp: None,
        extra: Default::default(),
    };
    let access_token = gw.live.load().tokens.sign(claims).map_err(|e| {
        tracing::error!(error = %e, "signing a client's access token failed");
        OAuthError::server_error()
    })?;
    gw.audit.record(
        Event::new("oauth.token", "success")
            .actor(Some(client.id))
            .subject(client.client_id.clone())
            .client(ip)
            .detail(format!("scope: {scope}")),
    );
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(ClientTokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: gw.client_ttl_secs,
        scope,
    }))
}

/// `POST /api/oauth/introspect` (RFC 7662).
#[utoipa::path(post, operation_id = "oauth_introspect", path = "/api/oauth/introspect", summary = "Token introspection (RFC 7662) for resource servers", tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content_type = "application/x-www-form-urlencoded", content = Object,
        description = "`token` (an access token), optional `token_type_hint`; the caller authenticates as a registered client (`client_secret_basic` or `client_secret_post`) that an admin allowed to introspect (`introspect`: the audiences whose tokens it may see)"),
    responses(
        (status = 200, description = "`{\"active\": false}` for a token that is invalid, expired or revoked (logout, a deactivated client or account), or of an audience the client may not introspect; else `active: true` with its claims (`sub`, `client_id`, `username`, `scope`, `roles`, `exp`, `iat`, `nbf`, `iss`, `aud`, `jti`, `token_type`)", body = Object),
        (status = 400, description = "`invalid_request`: not a form, no `token`, a repeated parameter", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client` (with `WWW-Authenticate: Basic`)", body = OAuthErrorBody),
        (status = 403, description = "`unauthorized_client`: this client was not allowed to introspect", body = OAuthErrorBody),
        (status = 429, description = "Too many failed client authentications; see `Retry-After`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the client registry cannot be read", body = OAuthErrorBody),
    ))]
pub async fn introspect(
    req: HttpRequest,
    gw: web::Data<Identity>,
    body: web::Bytes,
) -> HttpResponse {
    match introspection(&req, &gw, &body).await {
        Ok(v) => {
            let mut res = HttpResponse::Ok();
            no_store(&mut res);
            res.json(v)
        }
        Err(e) => e.to_response(),
    }
}

async fn introspection(req: &HttpRequest, gw: &Identity, body: &[u8]) -> Result<Value, OAuthError> {
    let form = Form::parse(req, body)?;
    let creds = credentials(req.headers(), &form)?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_owned();
    let (client, _) = authenticate_client(req, gw, &creds, "introspect").await?;
    if client.introspect.is_empty() {
        return Err(OAuthError::unauthorized_client(
            "this client may not introspect tokens (an admin grants it audiences to introspect)",
        ));
    }
    let live = gw.live.load();
    let mut headers = HeaderMap::new();
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return Ok(json!({"active": false}));
    };
    headers.insert(header::AUTHORIZATION, bearer);
    // Only the gateway's own tokens: a trusted provider's are introspected
    // at that provider.
    let Ok(caller) = caller::authenticate(&live.tokens, gw.sessions.deny_list(), &headers)
        .and_then(|c| {
            if c.claims().iss == live.tokens.issuer() {
                Ok(c)
            } else {
                Err(caller::Refusal::InvalidToken)
            }
        })
    else {
        return Ok(json!({"active": false}));
    };
    let c = caller.claims();
    // Only tokens meant for it: of another audience it learns nothing.
    if !client.introspect.contains(&c.aud) {
        return Ok(json!({"active": false}));
    }
    let mut out = json!({
        "active": true,
        "token_type": "Bearer",
        "sub": c.sub,
        "username": c.username,
        "roles": c.roles,
        "exp": c.exp,
        "iat": c.iat,
        "nbf": c.nbf,
        "iss": c.iss,
        "aud": c.aud,
        "jti": c.jti,
    });
    if let Some(s) = &c.scope {
        out["scope"] = json!(s);
    }
    if let Some(id) = &c.client_id {
        out["client_id"] = json!(id);
    }
    Ok(out)
}

/// The metadata both discovery documents share (RFC 8414 section 2).
fn metadata(gw: &Identity) -> serde_json::Map<String, Value> {
    let live = gw.live.load();
    let base = gw.public_url.as_str();
    let mut scopes: Vec<&String> = live
        .routes
        .routes()
        .iter()
        .flat_map(|r| r.scopes())
        .collect();
    scopes.sort();
    scopes.dedup();
    let mut all_scopes: Vec<&str> = crate::identity::authorize::OIDC_SCOPES.to_vec();
    all_scopes.extend(scopes.iter().map(|s| s.as_str()));
    let with_none = [AUTH_METHODS[0], AUTH_METHODS[1], "none"];
    let v = json!({
        "issuer": live.tokens.issuer(),
        "authorization_endpoint": format!("{base}{}", crate::identity::authorize::AUTHORIZE_PATH),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/oauth/token"),
        "introspection_endpoint": format!("{base}/api/oauth/introspect"),
        "revocation_endpoint": format!("{base}/api/oauth/revoke"),
        "grant_types_supported": [AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": with_none,
        "revocation_endpoint_auth_methods_supported": with_none,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": all_scopes,
        "service_documentation": format!("{base}/docs"),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn document(m: serde_json::Map<String, Value>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(Value::Object(m))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(get, operation_id = "authorization_server_metadata", path = "/.well-known/oauth-authorization-server", summary = "OAuth 2.0 authorization server metadata (RFC 8414)", tag = "oauth",
    responses(
        (status = 200, description = "`issuer`, `jwks_uri`, `token_endpoint`, `introspection_endpoint`, `grant_types_supported`, the authentication methods, `scopes_supported` (the scopes the route rules name)", body = Object),
    ))]
pub async fn authorization_server(gw: web::Data<Identity>) -> HttpResponse {
    document(metadata(&gw))
}

/// `GET /.well-known/openid-configuration`: the same, with the fields
/// OpenID Connect discovery adds, so OIDC-aware resource servers find the
/// issuer and its keys. Gatehouse issues access tokens, not ID tokens: the
/// signing algorithms listed are those of its published keys.
#[utoipa::path(get, operation_id = "openid_configuration", path = "/.well-known/openid-configuration", summary = "OpenID Connect discovery document", tag = "oauth",
    responses(
        (status = 200, description = "The RFC 8414 metadata plus `subject_types_supported`, `id_token_signing_alg_values_supported` (the algorithms of the published keys) and `acr_values_supported`", body = Object),
    ))]
pub async fn openid_configuration(gw: web::Data<Identity>) -> HttpResponse {
    let mut m = metadata(&gw);
    let base = gw.public_url.as_str();
    m.insert("subject_types_supported".into(), json!(["public"]));
    m.insert(
        "userinfo_endpoint".into(),
        json!(format!("{base}/oauth/userinfo")),
    );
    m.insert(
        "end_session_endpoint".into(),
        json!(format!(
            "{base}{}",
            crate::identity::end_session::END_SESSION_PATH
        )),
    );
    m.insert(
        "prompt_values_supported".into(),
        json!(["none", "login", "consent"]),
    );
    m.insert(
        "claims_supported".into(),
        json!([
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "at_hash",
            "sid",
            "preferred_username",
            "name",
            "email",
            "email_verified"
        ]),
    );
    m.insert("claims_parameter_supported".into(), json!(false));
    m.insert("request_parameter_supported".into(), json!(false));
    m.insert("request_uri_parameter_supported".into(), json!(false));
    // The context classes of the gateway's own access tokens (`acr`): a
    // password, or a password and a second factor (RFC 9470 names the
    // latter in its step-up challenges).
    m.insert(
        "acr_values_supported".into(),
        json!([
            crate::identity::tokens::ACR_PASSWORD,
            crate::identity::tokens::ACR_MFA
        ]),
    );
    m.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(gw.live.load().tokens.published_algorithms()),
    );
    document(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_a_subset_or_all_allowed() {
        let allowed = vec!["orders:read".to_owned(), "orders:write".to_owned()];
        assert_eq!(granted_scopes(None, &allowed).unwrap(), allowed);
        assert_eq!(
            granted_scopes(Some("orders:read orders:read"), &allowed).unwrap(),
            vec!["orders:read".to_owned()]
        );
        assert_eq!(
            granted_scopes(Some("admin"), &allowed).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            granted_scopes(Some("a\"b"), &allowed).unwrap_err().code(),
            "invalid_scope"
        );
    }
}
