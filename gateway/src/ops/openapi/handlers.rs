//! The gateway's own endpoints as utoipa describes them, the document the
//! shipped configuration produces without running anything, and the
//! endpoints that serve the description: `GET /openapi.json` (the merged
//! document), Swagger UI at `/docs` and Redoc at `/redoc`, from the assets
//! compiled into the binary.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use common::{FieldError, Problem};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::ops::Ops;
use crate::ops::openapi::merge::merge;
use crate::traffic::compose::table::ComposedTable;
use crate::traffic::routes::RouteTable;

/// The gateway's own endpoints.
#[derive(OpenApi)]
#[openapi(
    info(title = "gatehouse API", version = "0.1.0",
        description = "The public API of gatehouse, as the gateway serves it: the gateway's own \
endpoints and every service operation a route exposes. Log in with `POST /api/login`, then \
send `Authorization: Bearer <access_token>`; a machine client gets its token from \
`POST /api/oauth/token` (client credentials). Each operation lists the roles it needs \
(`x-required-roles`; empty means any signed-in caller), the scopes its token must carry (in its \
security requirement and `x-required-scopes`), and the errors the gateway itself may answer \
(problem+json, RFC 9457; the OAuth endpoints answer as RFC 6749 says)."),
    paths(
        crate::identity::login::login, crate::identity::login::login_mfa, crate::identity::login::refresh, crate::identity::login::logout, crate::identity::login::jwks,
        crate::ops::admin::reload, crate::ops::admin::routes, crate::ops::admin::upstreams,
        crate::ops::admin::add_target, crate::ops::admin::remove_target, crate::ops::status::stats,
        crate::ops::audit_api::list,
        crate::identity::oauth::token, crate::identity::oauth::introspect, crate::identity::oauth::authorization_server,
        crate::identity::oauth::openid_configuration,
        crate::identity::client_admin::create, crate::identity::client_admin::list, crate::identity::client_admin::get,
        crate::identity::client_admin::update, crate::identity::client_admin::delete, crate::identity::client_admin::add_secret,
        crate::identity::client_admin::remove_secret,
        crate::identity::oidc::userinfo, crate::identity::oidc::revoke,
        crate::identity::consents_api::list, crate::identity::consents_api::withdraw,
        crate::traffic::forward_auth::verify,
        crate::identity::me_sessions::list, crate::identity::me_sessions::end, crate::identity::me_sessions::end_all,
        crate::identity::authorize::authorize_get, crate::identity::authorize::authorize_post,
        crate::identity::end_session::end_session_get, crate::identity::end_session::end_session_post,
        crate::identity::login_page::show, crate::identity::login_page::password,
        crate::identity::login_page::second_step, crate::identity::login_page::sign_out,
        crate::identity::provider_pages::start, crate::identity::provider_pages::callback,
    ),
    components(schemas(
        crate::identity::login::LoginRequest, crate::identity::login::RefreshRequest, crate::identity::login::TokenResponse,
        crate::identity::login::MfaLoginRequest, crate::identity::login::MfaRequired,
        crate::identity::tokens::JwkSet, crate::identity::tokens::Jwk, crate::ops::admin::TargetRequest, Problem, FieldError,
        common::audit::AuditPage, common::audit::AuditRecord,
        crate::identity::oauth::ClientTokenResponse, crate::identity::oauth::OAuthErrorBody,
        crate::identity::clients::Client, crate::identity::clients::SecretInfo, crate::identity::client_admin::NewClient,
        crate::identity::client_admin::ClientUpdate, crate::identity::client_admin::CreatedClient,
        crate::identity::client_admin::CreatedSecret, crate::identity::apps::AppFields, crate::identity::consents_api::Consent,
        crate::identity::me_sessions::SessionView, crate::identity::me_sessions::SessionList,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Tokens: login, refresh, logout and the public keys"),
        (name = "admin", description = "Gateway administration (admin role)"),
        (name = "oauth", description = "Gatehouse as an OAuth 2.0 authorization server: client credentials, introspection, metadata"),
        (name = "clients", description = "Registered clients: machine clients and the applications people sign in to (admin role)"),
        (name = "oidc", description = "Gatehouse as an OpenID provider: the authorization code flow with PKCE, userinfo, sign-out"),
        (name = "sign-in", description = "The hosted login page (HTML forms)"),
        (name = "forward-auth", description = "Decisions for another ingress (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz)"),
        (name = "composed", description = "Answers built by the gateway from several calls at once"),
    )
)]
pub struct GatewayDoc;

/// The bearer (access JWT) security scheme, named `bearer`.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token from `POST /api/login`, or a machine client's from `POST /api/oauth/token`.",
                    ))
                    .build(),
            ),
        );
        // A route with `session: true` admits the login page's cookie too
        // (`__Host-gatehouse-session` when the gateway is on HTTPS).
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "gatehouse-session",
                    "The browser session the login page starts (`__Host-gatehouse-session` on HTTPS). Unsafe methods also need `Sec-Fetch-Site: same-origin`, a same-origin `Origin`, or the header `X-Gatehouse-CSRF: 1`.",
                ),
            )),
        );
        // Swagger UI's "Authorize" signs in with the code flow and PKCE as
        // the shipped public client `gatehouse-docs` (see `swagger_config`).
        components.add_security_scheme(
            "oidc",
            SecurityScheme::OAuth2(utoipa::openapi::security::OAuth2::with_description(
                [utoipa::openapi::security::Flow::AuthorizationCode(
                    utoipa::openapi::security::AuthorizationCode::new(
                        "/oauth/authorize",
                        "/api/oauth/token",
                        utoipa::openapi::security::Scopes::from_iter([
                            ("openid", "Who you are"),
                            ("profile", "Your username and name"),
                        ]),
                    ),
                )],
                "Sign in on gatehouse's login page (authorization code with PKCE).",
            )),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A machine client's `client_id` and `client_secret` (`client_secret_basic`); \
                         `client_secret_post` sends them in the form instead.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The gateway's own document, as JSON for the merge.
pub fn own_document() -> Value {
    serde_json::to_value(GatewayDoc::openapi()).unwrap_or_else(|_| json!({}))
}

/// The document the shipped configuration produces from the services' own
/// documents, without running anything (the committed `openapi/gateway.json`).
pub fn offline(
    settings: &crate::settings::Settings,
    services: &BTreeMap<String, Arc<Value>>,
) -> Result<Value, String> {
    let known = |u: &str| settings.upstreams.contains_key(u);
    let routes = RouteTable::new(&settings.routes, known)?;
    let composed = ComposedTable::new(&settings.composed, known)?;
    Ok(crate::ops::openapi::merge::merge(
        &own_document(),
        &routes,
        &composed,
        services,
    ))
}

/// `GET /openapi.json`: the merged document, with `x-service-documents`
/// saying how fresh each service's part is.
pub async fn openapi_json(gw: web::Data<Ops>) -> HttpResponse {
    let (docs, status) = gw.docs.snapshot();
    let live = gw.live.load();
    let mut doc = merge(&own_document(), &live.routes, &live.composed, &docs);
    doc["x-service-documents"] = status;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(doc)
}

/// Swagger UI's configuration: the merged document, authorizations kept
/// across reloads of the page.
pub type SwaggerConfig = Arc<utoipa_swagger_ui::Config<'static>>;

pub fn swagger_config() -> SwaggerConfig {
    Arc::new(
        // "Authorize" can sign in with the code flow too, as the
        // first-party public client the gateway ships (`gatehouse-docs`,
        // sent back to `<public_url>/docs/oauth2-redirect.html`).
        utoipa_swagger_ui::Config::with_oauth_config(
            ["/openapi.json"],
            utoipa_swagger_ui::oauth::Config::new()
                .client_id(crate::identity::apps::DOCS_CLIENT_ID)
                .use_pkce_with_authorization_code_grant(true)
                .scopes(vec!["openid".into(), "profile".into()]),
        )
        .persist_authorization(true)
        .display_request_duration(true),
    )
}

/// `GET /docs`: to `/docs/`, where the UI's relative asset paths resolve.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// What the documentation pages may load and do: their own scripts and
/// styles (Swagger UI sets inline style attributes), images including the
/// `data:` icons, calls to this origin only; never framed by another page.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

/// `GET /docs/{file}`: Swagger UI from the assets compiled into the binary.
pub async fn docs_file(tail: web::Path<String>, config: web::Data<SwaggerConfig>) -> HttpResponse {
    match utoipa_swagger_ui::serve(&tail, config.get_ref().clone()) {
        Ok(Some(file)) => HttpResponse::Ok()
            .content_type(file.content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .body(file.bytes.to_vec()),
        Ok(None) => Problem::not_found("no such file in the API documentation UI").to_response(),
        Err(e) => {
            tracing::error!(error = %e, "serving Swagger UI");
            Problem::internal().to_response()
        }
    }
}

/// Redoc's standalone bundle (2.5.4, MIT), compiled into the binary: see
/// `gateway/assets/redoc/PROVENANCE.md`.
const REDOC_JS: &[u8] = include_bytes!("../../../assets/redoc/redoc.standalone.js");

/// The Redoc page: the merged document, rendered by the bundle served
/// beside it. No inline script (the CSP allows none): the `<redoc>`
/// element names the document.
const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gatehouse API</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button="false"></redoc>
<script src="/redoc/redoc.js"></script>
</body>
</html>
"#;

/// The documentation pages' CSP, for Redoc: its search index runs in a
/// worker it makes from a `blob:` URL.
const REDOC_CSP: &str = "default-src 'none'; script-src 'self'; worker-src blob:; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn documentation(content_type: &str, body: Vec<u8>, cache: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::CONTENT_SECURITY_POLICY, REDOC_CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// `GET /redoc`: the merged document in Redoc.
pub async fn redoc_page() -> HttpResponse {
    documentation(
        "text/html; charset=utf-8",
        REDOC_PAGE.as_bytes().to_vec(),
        "no-cache",
    )
}

/// `GET /redoc/redoc.js`: the bundle, from the binary.
pub async fn redoc_js() -> HttpResponse {
    documentation(
        "text/javascript; charset=utf-8",
        REDOC_JS.to_vec(),
        "public, max-age=86400",
    )
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    #[test]
    fn the_vendored_redoc_is_the_one_provenance_names() {
        let digest = sha2::Sha256::digest(super::REDOC_JS);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b"
        );
        // The page loads nothing from elsewhere.
        assert!(!super::REDOC_PAGE.contains("http"));
    }
}
