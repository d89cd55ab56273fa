//! What makes a registered client an application people sign in to (the
//! authorization code flow): where it may be sent back to, which grants it
//! uses, whether it holds a secret, and whether it is the team's own
//! (first-party: no consent screen). Pure rules, checked when an admin
//! registers or changes a client; the authorization and token endpoints
//! apply them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use common::FieldError;

pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The grants a client may be registered for.
pub const GRANT_TYPES: [&str; 3] = [AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS];

const MAX_URIS: usize = 10;
const MAX_URI: usize = 512;

/// A client's application fields (RFC 7591 names where there is one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppFields {
    /// Where the authorization endpoint may send the browser back, each
    /// compared exactly: https, or http on a loopback address.
    #[schema(example = json!(["https://app.example.com/callback"]))]
    pub redirect_uris: Vec<String>,
    /// Where sign-out may send the browser back (`post_logout_redirect_uri`).
    pub post_logout_redirect_uris: Vec<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    #[schema(example = json!(["authorization_code", "refresh_token"]))]
    pub grant_types: Vec<String>,
    /// A public client (a single-page or native app): no secret, PKCE only
    /// (`token_endpoint_auth_method: none`).
    pub public: bool,
    /// The team's own application: users are not asked to consent.
    pub first_party: bool,
}

impl AppFields {
    pub fn allows(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// The grants of a registration that named none: the code flow (and
    /// refresh) when it has redirect URIs, client credentials otherwise.
    pub fn default_grants(redirect_uris: &[String], public: bool) -> Vec<String> {
        if redirect_uris.is_empty() && !public {
            vec![CLIENT_CREDENTIALS.to_owned()]
        } else {
            vec![AUTHORIZATION_CODE.to_owned(), REFRESH_TOKEN.to_owned()]
        }
    }
}

/// Whether `uri` may be registered as a redirect URI: absolute, `https`
/// (or `http` on a loopback address, RFC 8252 section 7.3), no fragment
/// (RFC 6749 section 3.1.2), no user info, at most 512 bytes. Why not.
pub fn redirect_uri_problem(uri: &str) -> Option<&'static str> {
    if uri.len() > MAX_URI {
        return Some("at most 512 bytes");
    }
    let Ok(url) = url::Url::parse(uri) else {
        return Some("not an absolute URL");
    };
    if url.as_str() != uri && format!("{uri}/") != url.as_str() {
        return Some("not in its normal form (write it as the browser will send it)");
    }
    if url.fragment().is_some() {
        return Some("no fragment (RFC 6749 section 3.1.2)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("no user info");
    }
    match url.scheme() {
        "https" if url.host().is_some() => None,
        "http" if is_loopback(&url) => None,
        "http" => Some("https, or http on a loopback address (127.0.0.1, [::1], localhost)"),
        _ => Some("https, or http on a loopback address"),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The field errors of application fields as registered (`public` and
/// `has_redirects` as they will be after the change).
pub fn check(app: &AppFields) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, list) in [
        ("redirect_uris", &app.redirect_uris),
        ("post_logout_redirect_uris", &app.post_logout_redirect_uris),
    ] {
        if list.len() > MAX_URIS {
            errors.push(FieldError::new(
                field,
                "length",
                format!("at most {MAX_URIS}"),
            ));
        }
        for uri in list {
            if let Some(why) = redirect_uri_problem(uri) {
                errors.push(FieldError::new(field, "uri", format!("`{uri}`: {why}")));
            }
        }
        if (1..list.len()).any(|i| list[..i].contains(&list[i])) {
            errors.push(FieldError::new(field, "unique", "each URI once"));
        }
    }
    if let Some(g) = app
        .grant_types
        .iter()
        .find(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        errors.push(FieldError::new(
            "grant_types",
            "grant_type",
            format!("`{g}` is not one of {}", GRANT_TYPES.join(", ")),
        ));
    }
    if app.allows(AUTHORIZATION_CODE) && app.redirect_uris.is_empty() {
        errors.push(FieldError::new(
            "redirect_uris",
            "required",
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if app.allows(REFRESH_TOKEN) && !app.allows(AUTHORIZATION_CODE) {
        errors.push(FieldError::new(
            "grant_types",
            "grant_type",
            "refresh_token comes with authorization_code",
        ));
    }
    if app.public && app.allows(CLIENT_CREDENTIALS) {
        errors.push(FieldError::new(
            "grant_types",
            "grant_type",
            "a public client holds no secret: client_credentials is not for it",
        ));
    }
    if app.grant_types.is_empty() {
        errors.push(FieldError::new(
            "grant_types",
            "required",
            "at least one grant",
        ));
    }
    errors
}

/// The `redirect_uri` with the response's parameters added (its own query
/// kept, RFC 6749 section 3.1.2).
pub fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::from(redirect_uri);
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        sep = '&';
        out.extend(form_urlencoded::byte_serialize(k.as_bytes()));
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// The `client_id` of the Swagger UI at `/docs` (`login.docs_client`).
pub const DOCS_CLIENT_ID: &str = "gatehouse-docs";
/// Where the Swagger UI receives the code.
pub const DOCS_REDIRECT_PATH: &str = "/docs/oauth2-redirect.html";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_and_exact() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:9/cb",
            "http://localhost:3000/callback",
        ] {
            assert_eq!(redirect_uri_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "app.example.com/cb",
            "javascript:alert(1)",
            "https://APP.example.com/cb",
            "https://app.example.com/a/../cb",
            "myapp://cb",
        ] {
            assert!(redirect_uri_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn grants_fit_the_client() {
        let code = AppFields {
            redirect_uris: vec!["https://a.example/cb".into()],
            grant_types: AppFields::default_grants(&["x".into()], false),
            ..Default::default()
        };
        assert!(check(&code).is_empty());
        let public_cc = AppFields {
            public: true,
            grant_types: vec![CLIENT_CREDENTIALS.into()],
            ..Default::default()
        };
        assert!(!check(&public_cc).is_empty());
        let no_uri = AppFields {
            grant_types: vec![AUTHORIZATION_CODE.into()],
            ..Default::default()
        };
        assert_eq!(check(&no_uri)[0].field, "redirect_uris");
        assert_eq!(
            AppFields::default_grants(&[], false),
            vec![CLIENT_CREDENTIALS.to_owned()]
        );
    }

    #[test]
    fn parameters_are_added_to_the_redirect_uri() {
        assert_eq!(
            with_params("https://a.example/cb", &[("code", "a b"), ("state", "x&y")]),
            "https://a.example/cb?code=a+b&state=x%26y"
        );
        assert_eq!(
            with_params("https://a.example/cb?t=1", &[("code", "c")]),
            "https://a.example/cb?t=1&code=c"
        );
    }
}
