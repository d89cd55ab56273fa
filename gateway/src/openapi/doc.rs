//! The gateway's own endpoints as utoipa describes them, and the document
//! the shipped configuration produces without running anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{FieldError, Problem};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::compose::table::ComposedTable;
use crate::routes::RouteTable;

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
        crate::auth::login, crate::auth::login_mfa, crate::auth::refresh, crate::auth::logout, crate::auth::jwks,
        crate::admin::reload, crate::admin::routes, crate::admin::upstreams,
        crate::admin::add_target, crate::admin::remove_target, crate::ops::stats,
        crate::audit::list,
        crate::oauth::token, crate::oauth::introspect, crate::oauth::authorization_server,
        crate::oauth::openid_configuration,
        crate::client_admin::create, crate::client_admin::list, crate::client_admin::get,
        crate::client_admin::update, crate::client_admin::delete, crate::client_admin::add_secret,
        crate::client_admin::remove_secret,
    ),
    components(schemas(
        crate::auth::LoginRequest, crate::auth::RefreshRequest, crate::auth::TokenResponse,
        crate::auth::MfaLoginRequest, crate::auth::MfaRequired,
        crate::tokens::JwkSet, crate::tokens::Jwk, crate::admin::TargetRequest, Problem, FieldError,
        common::audit::AuditPage, common::audit::AuditRecord,
        crate::oauth::ClientTokenResponse, crate::oauth::OAuthErrorBody,
        crate::clients::Client, crate::clients::SecretInfo, crate::client_admin::NewClient,
        crate::client_admin::ClientUpdate, crate::client_admin::CreatedClient,
        crate::client_admin::CreatedSecret,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Tokens: login, refresh, logout and the public keys"),
        (name = "admin", description = "Gateway administration (admin role)"),
        (name = "oauth", description = "Gatehouse as an OAuth 2.0 authorization server: client credentials, introspection, metadata"),
        (name = "clients", description = "Machine clients (admin role)"),
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
    Ok(crate::openapi::merge::merge(
        &own_document(),
        &routes,
        &composed,
        services,
    ))
}
