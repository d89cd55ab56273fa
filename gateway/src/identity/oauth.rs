//! The gateway as an OAuth 2.0 authorization server for machine clients:
//! the token endpoint (client credentials, RFC 6749 section 4.4), token
//! introspection (RFC 7662) and the metadata other parties discover it by
//! (RFC 8414, and the OpenID Connect discovery document).
//!
//! These endpoints speak OAuth, not problem+json: form-encoded requests,
//! and errors as RFC 6749 section 5.2 says (`{"error", "error_description"}`,
//! `invalid_client` as a 401 with a `Basic` challenge), never cached.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use base64::Engine as _;
use common::audit::Event;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::Identity;
use crate::identity::caller;
use crate::identity::caller::client_ip;
use crate::identity::clients::Client;
use crate::identity::login_limits::Outcome;
use crate::identity::tokens::AccessClaims;

/// The one grant the token endpoint serves.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Client authentication methods (RFC 7591 names).
pub const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// The largest form either endpoint reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// An RFC 6749 section 5.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    /// ASCII without `"` or `\` (the RFC's character set).
    description: String,
    retry_after: Option<u64>,
}

/// The error body (RFC 6749 section 5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope`.
    #[schema(example = "invalid_client")]
    pub error: String,
    pub error_description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        let description = description
            .into()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if (' '..='~').contains(&c) => c,
                _ => '?',
            })
            .collect();
        Self {
            status,
            error,
            description,
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// A failed client authentication: 401 with a `Basic` challenge.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// An authenticated client that may not do this (403).
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "unauthorized_client", description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// Too many failed client authentications: 429 with `Retry-After`.
    fn locked(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_client",
            format!("too many failed client authentications; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    fn server_error() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the client registry cannot be read; retry later",
        )
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        no_store(&mut res);
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"gatehouse\""));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(OAuthErrorBody {
            error: self.error.to_owned(),
            error_description: self.description.clone(),
        })
    }
}

fn no_store(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}

/// A form-encoded request's parameters: each at most once, an empty value
/// treated as absent (RFC 6749 section 3.1).
#[derive(Debug, Default)]
pub struct Form(BTreeMap<String, String>);

impl Form {
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, OAuthError> {
        let form_type = matches!(
            req.mime_type(),
            Ok(Some(m)) if m.essence_str() == "application/x-www-form-urlencoded"
        );
        if !form_type {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        if body.len() > MAX_FORM_BYTES {
            return Err(OAuthError::invalid_request(format!(
                "the body is larger than {MAX_FORM_BYTES} bytes"
            )));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::invalid_request("the body is not UTF-8"));
        }
        let mut out = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if v.is_empty() {
                continue;
            }
            if out.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter `{k}` is given more than once"
                )));
            }
        }
        Ok(Self(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// How the client presented its credentials.
#[derive(Debug)]
pub struct Credentials {
    pub client_id: String,
    pub secret: SecretString,
}

/// One form-encoded component of HTTP Basic credentials (RFC 6749 section
/// 2.3.1 encodes the id and secret before Base64).
fn form_decoded(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The client's credentials, by exactly one method: `client_secret_basic`
/// (the `Authorization` header) or `client_secret_post` (the form).
pub fn credentials(headers: &HeaderMap, form: &Form) -> Result<Credentials, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            let v = v.to_str().ok()?;
            let (scheme, rest) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (id, secret) = text.split_once(':')?;
            Some((form_decoded(id)?, form_decoded(secret)?))
        })
        .map(|parsed| {
            parsed.ok_or_else(|| {
                OAuthError::invalid_client(
                    "the Authorization header is not usable Basic credentials",
                )
            })
        })
        .transpose()?;
    let posted_secret = form.get("client_secret");
    match (basic, posted_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not both Basic and client_secret",
        )),
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the client in the Authorization header",
                ));
            }
            Ok(Credentials {
                client_id: id,
                secret: secret.into(),
            })
        }
        (None, Some(secret)) => match form.get("client_id") {
            Some(id) => Ok(Credentials {
                client_id: id.to_owned(),
                secret: secret.to_owned().into(),
            }),
            None => Err(OAuthError::invalid_request(
                "client_secret needs client_id alongside",
            )),
        },
        (None, None) => Err(OAuthError::invalid_client(
            "client authentication is required (client_secret_basic or client_secret_post)",
        )),
    }
}

/// Authenticate a client, counting failures like logins (reserved before
/// the secret is checked, so concurrency cannot outrun the budget): per
/// address, and per client id *from that address*, so that whoever knows a
/// `client_id` cannot lock the client out where it really runs; guesses
/// are bounded by the address budget, and the secrets are 256-bit.
async fn authenticate_client(
    req: &HttpRequest,
    gw: &Identity,
    creds: &Credentials,
    endpoint: &'static str,
) -> Result<(Client, uuid::Uuid), OAuthError> {
    let ip = client_ip(req).map(|a| a.to_string()).unwrap_or_default();
    let shared = gw.redis.as_ref();
    let locked = |what: &str, secs: u64| {
        gw.audit.record(
            Event::new("oauth.client.locked", "refused")
                .subject(creds.client_id.clone())
                .client(Some(ip.clone()))
                .detail(format!("{endpoint}: the {what} budget is spent")),
        );
        OAuthError::locked(secs)
    };
    let by_ip = gw
        .ip_limiter
        .reserve(shared, &ip)
        .await
        .map_err(|secs| locked("address", secs))?;
    let client_key = format!("{}|{ip}", creds.client_id);
    let by_client = match gw.client_limiter.reserve(shared, &client_key).await {
        Ok(r) => r,
        Err(secs) => {
            gw.ip_limiter.settle(shared, by_ip, Outcome::Void).await;
            return Err(locked("client", secs));
        }
    };
    let found = gw
        .clients
        .authenticate(&creds.client_id, &creds.secret)
        .await;
    let outcome = match &found {
        Ok(Some(_)) => Outcome::Passed,
        Ok(None) => Outcome::Failed,
        Err(_) => Outcome::Void,
    };
    gw.client_limiter.settle(shared, by_client, outcome).await;
    gw.ip_limiter.settle(shared, by_ip, outcome).await;
    match found {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            gw.audit.record(
                Event::new("oauth.client.failure", "failure")
                    .subject(creds.client_id.clone())
                    .client(Some(ip))
                    .detail(format!(
                        "{endpoint}: unknown client, wrong secret or inactive"
                    )),
            );
            Err(OAuthError::invalid_client(
                "unknown client, wrong secret, or the client is not active",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the client registry failed");
            Err(OAuthError::server_error())
        }
    }
}

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
        Some(other) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "`{other}` is not supported; this endpoint serves client_credentials"
            )));
        }
    }
    let creds = credentials(req.headers(), &form)?;
    let (client, secret_id) = authenticate_client(req, gw, &creds, "token").await?;
    let ip = client_ip(req).map(|a| a.to_string());
    let scopes = match granted_scopes(form.get("scope"), &client.scopes) {
        Ok(s) => s,
        Err(e) => {
            gw.audit.record(
                Event::new("oauth.token", "refused")
                    .actor(Some(client.id))
                    .subject(client.client_id.clone())
                    .client(ip)
                    .detail(e.description.clone()),
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
    let v = json!({
        "issuer": live.tokens.issuer(),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/oauth/token"),
        "introspection_endpoint": format!("{base}/api/oauth/introspect"),
        "grant_types_supported": [CLIENT_CREDENTIALS],
        // No authorization endpoint, hence no response type.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": scopes,
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
    m.insert("subject_types_supported".into(), json!(["public"]));
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
    use actix_web::test::TestRequest;

    fn form(body: &str) -> Result<Form, OAuthError> {
        let req = TestRequest::default()
            .insert_header((
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=UTF-8",
            ))
            .to_http_request();
        Form::parse(&req, body.as_bytes())
    }

    #[test]
    fn forms_follow_rfc_6749() {
        let f = form("grant_type=client_credentials&scope=a+b%3Ac&empty=").unwrap();
        assert_eq!(f.get("scope"), Some("a b:c"));
        assert_eq!(f.get("empty"), None, "an empty value is as if omitted");
        let e = form("scope=a&scope=b").unwrap_err();
        assert_eq!(
            (e.status, e.error),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let json = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .to_http_request();
        assert_eq!(
            Form::parse(&json, b"{}").unwrap_err().error,
            "invalid_request"
        );
        let none = TestRequest::default().to_http_request();
        assert_eq!(
            Form::parse(&none, b"a=b").unwrap_err().error,
            "invalid_request"
        );
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[test]
    fn one_authentication_method_exactly() {
        use secrecy::ExposeSecret as _;
        let empty = form("").unwrap();
        // Basic, with form-encoding inside (RFC 6749 section 2.3.1).
        let c = credentials(&basic("my%20id", "p%3Aw+d"), &empty).unwrap();
        assert_eq!(
            (c.client_id.as_str(), c.secret.expose_secret()),
            ("my id", "p:w d")
        );
        let c = credentials(
            &HeaderMap::new(),
            &form("client_id=a&client_secret=s").unwrap(),
        )
        .unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.expose_secret()), ("a", "s"));
        let both = credentials(&basic("a", "s"), &form("client_secret=s").unwrap()).unwrap_err();
        assert_eq!(both.error, "invalid_request");
        let other = credentials(&basic("a", "s"), &form("client_id=b").unwrap()).unwrap_err();
        assert_eq!(other.error, "invalid_request");
        let none = credentials(&HeaderMap::new(), &empty).unwrap_err();
        assert_eq!(
            (none.status, none.error),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        let only_id = credentials(&HeaderMap::new(), &form("client_id=a").unwrap()).unwrap_err();
        assert_eq!(only_id.error, "invalid_client");
        let mut junk = HeaderMap::new();
        junk.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(
            credentials(&junk, &empty).unwrap_err().error,
            "invalid_client"
        );
    }

    #[test]
    fn scopes_are_a_subset_or_all_allowed() {
        let allowed = vec!["orders:read".to_owned(), "orders:write".to_owned()];
        assert_eq!(granted_scopes(None, &allowed).unwrap(), allowed);
        assert_eq!(
            granted_scopes(Some("orders:read orders:read"), &allowed).unwrap(),
            vec!["orders:read".to_owned()]
        );
        assert_eq!(
            granted_scopes(Some("admin"), &allowed).unwrap_err().error,
            "invalid_scope"
        );
        assert_eq!(
            granted_scopes(Some("a\"b"), &allowed).unwrap_err().error,
            "invalid_scope"
        );
    }

    #[test]
    fn descriptions_keep_to_the_rfc_character_set() {
        let e = OAuthError::invalid_request("a \"quoted\" \\ thing — ok");
        assert!(
            e.description
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
        );
        let res = OAuthError::invalid_client("x").to_response();
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Basic realm=\"gatehouse\""
        );
        assert_eq!(
            res.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
    }
}
