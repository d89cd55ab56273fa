//! `GET /openapi.json` (the merged document) and Swagger UI at `/docs`,
//! from the assets compiled into the binary.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use common::Problem;

use crate::openapi::doc::own_document;
use crate::openapi::merge::merge;
use crate::state::Gateway;

/// `GET /openapi.json`: the merged document, with `x-service-documents`
/// saying how fresh each service's part is.
pub async fn openapi_json(gw: web::Data<Gateway>) -> HttpResponse {
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
        utoipa_swagger_ui::Config::new(["/openapi.json"])
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
