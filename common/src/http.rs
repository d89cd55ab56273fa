//! HTTP building blocks every service uses: extractor configs that answer bad
//! input with problem+json, the default 404/405, and health endpoints.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, web};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{PROBLEM_JSON, Problem};

/// Largest JSON body a service accepts.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// JSON bodies: wrong content type 415, too large 413, anything that does not
/// deserialize into the expected shape 422.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(MAX_JSON_BODY).error_handler(|err, _req| {
        let problem = match &err {
            JsonPayloadError::ContentType => {
                Problem::unsupported_media_type("the body must be application/json")
            }
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                Problem::payload_too_large(format!("the body exceeds {MAX_JSON_BODY} bytes"))
            }
            JsonPayloadError::Deserialize(e) => Problem::malformed_body(e.to_string()),
            other => Problem::malformed_body(other.to_string()),
        };
        problem.into()
    })
}

/// Query strings that do not parse: 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        Problem::bad_request(format!("invalid query string: {err}")).into()
    })
}

/// Path parameters that do not parse (e.g. an id that is not a UUID) name no
/// resource: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, req| {
        Problem::not_found(format!("no resource at {}", req.path())).into()
    })
}

/// Default service: 404 problem for any path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::not_found(format!("no resource at {}", req.path())).to_response()
}

/// Turns actix's empty 405 (known path, wrong method) into problem+json.
pub fn error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed::<B>)
}

fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, _) = res.into_parts();
    let response = Problem::method_not_allowed().to_response();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
}

/// Body of the health endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when healthy.
    pub status: &'static str,
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz`: the database answers.
pub async fn readyz(db: web::Data<DatabaseConnection>) -> HttpResponse {
    match db.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ok" }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            Problem::service_unavailable("the database is unreachable").to_response()
        }
    }
}

/// Adds the `gateway_proof` security scheme (the `x-gateway-token` header) to
/// a service's OpenAPI document.
pub struct GatewayProofScheme;

impl utoipa::Modify for GatewayProofScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "gateway_proof",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::identity::PROOF_HEADER,
                "Short-lived EdDSA proof signed by the gateway; set only by the gateway.",
            ))),
        );
    }
}
