//! The OAuth 2.0 wire format the token, introspection and revocation
//! endpoints share: RFC 6749 section 5.2 errors (never cached), form-encoded
//! requests, and client authentication (`client_secret_basic` or
//! `client_secret_post`, counted like logins).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse};
use base64::Engine as _;
use common::audit::Event;
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;

use super::Identity;
use crate::identity::caller::client_ip;
use crate::identity::clients::Client;
use crate::identity::login_limits::Outcome;

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

    /// The RFC 6749 error code.
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// What the error says (for the audit trail).
    pub fn description(&self) -> &str {
        &self.description
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

    /// RFC 6749 section 5.2 `invalid_grant`: a code or refresh token that
    /// is unknown, expired, spent, or another client's.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// A dependency is down: 503 `temporarily_unavailable`.
    pub fn temporarily_unavailable(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
    }

    pub(crate) fn server_error() -> Self {
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

pub(crate) fn no_store(res: &mut actix_web::HttpResponseBuilder) {
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
pub(crate) async fn authenticate_client(
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
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
