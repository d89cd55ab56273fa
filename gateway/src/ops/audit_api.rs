//! `GET /api/audit` (admins): the security events of the gateway and of the
//! users service, merged newest first, filtered and paginated alike.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use common::Problem;
use common::audit::{AuditPage, AuditQuery, AuditRecord};

use super::Ops;
use crate::identity::admission::AdminBearer;

/// The merged audit trail, newest first.
#[utoipa::path(get, path = "/api/audit", summary = "The audit trail of security events", tag = "admin",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events, newest first (the gateway's and the users service's; `missing` names a source that could not be read)", body = AuditPage),
        (status = 400, description = "An unknown or unparsable query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filters (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    _: AdminBearer,
    req: HttpRequest,
    gw: web::Data<Ops>,
    identity: web::Data<crate::identity::Identity>,
    query: web::Query<AuditQuery>,
) -> HttpResponse {
    if let Some(why) = common::text::query_problem(req.query_string()) {
        return Problem::validation(vec![common::FieldError::new("query", "text", why)])
            .to_response();
    }
    let filter = match query.into_inner().check() {
        Ok(f) => f,
        Err(p) => return p.to_response(),
    };
    let mut all = match common::audit::list(gw.audit.db(), "gateway", &filter).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "reading the audit trail failed");
            return common::db::problem(&e).to_response();
        }
    };
    let path = format!("/internal/audit?{}", req.query_string());
    let mut missing = Vec::new();
    match crate::identity::users_api::users_call(&identity, Method::GET, &path, None).await {
        Ok((StatusCode::OK, v)) => match serde_json::from_value::<Vec<AuditRecord>>(v) {
            Ok(rows) => all.extend(rows),
            Err(e) => {
                tracing::warn!(error = %e, "the users service's audit page did not parse");
                missing.push("users".to_owned());
            }
        },
        _ => missing.push("users".to_owned()),
    }
    let mut page = common::audit::merge(all, filter.limit);
    page.missing = missing;
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(page)
}
