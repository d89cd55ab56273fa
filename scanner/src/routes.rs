//! HTTP handlers: extract -> call a `service` function -> map to a DTO.
//! Every handler takes the caller first, so a request without a valid gateway
//! proof is refused (401) before its input is looked at.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use common::http::{GatewayProofScheme, Health, TextInputErrors};
use common::identity::Caller;
use common::{FieldError, Problem};
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::analysis::{Banner, CookieCheck, HeaderCheck, HeaderChecks, HeaderState};
use crate::domain::{Grade, NewScan, Scope};
use crate::dto::{CreateScanRequest, ListQuery, ScanList, ScanResponse};
use crate::error::{Error, Result};
use crate::probe::{Hop, Prober};
use crate::report::Report;
use crate::service;
use common::listing::{ListError, Listing};

type Db = web::Data<DatabaseConnection>;

/// This replica's name, shared with the handlers.
#[derive(Debug, Clone)]
pub struct Instance(pub String);

/// Mount the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/scans").get(list_scans).post(create_scan))
        .service(web::resource("/scans/{id}").get(get_scan))
        .service(web::resource("/openapi.json").get(openapi_json))
        .configure(common::http::health_routes);
}

/// Scan a URL now and record the result, owned by the caller.
///
/// The scan is one GET, following at most `scan.max_redirects` redirects, all
/// within `scan.timeout_ms`. A target that cannot be reached (DNS failure,
/// connection refused, TLS failure, timeout, too many redirects) is still
/// recorded: 201 with `error` set, `status_code` null and score 0 (F). A target
/// the SSRF policy refuses, directly or through a redirect, is a 422 and
/// leaves no record.
#[utoipa::path(post, path = "/scans", tag = "scans", request_body = CreateScanRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 201, description = "Scanned and recorded (also when the target was unreachable: see `error`); `Location` names the new scan", body = ScanResponse,
            headers(("location" = String, description = "Path of the new scan"))),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON, invalid, missing or unknown fields (all listed), or a target the SSRF policy refuses (`target-refused`, the detail says which address and why)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many of the caller's scans are in progress on this replica (`scan.max_concurrent_per_user`); see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_scan(
    caller: Caller,
    db: Db,
    prober: web::Data<Prober>,
    instance: web::Data<Instance>,
    in_flight: web::Data<crate::inflight::InFlight>,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse> {
    let new = NewScan::parse(&body)?;
    let Some(_slot) = in_flight.enter(caller.id) else {
        return Ok(Problem::too_many_requests(
            "too-many-scans",
            "too many of your scans are in progress; retry when one ends",
        )
        .to_response_retry_after(1));
    };
    let scan =
        service::scan_and_record(db.get_ref(), prober.get_ref(), &instance.0, caller.id, new)
            .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/scans/{}", scan.id)))
        .json(ScanResponse::from(scan)))
}

/// List the caller's scans, newest first; an admin sees everyone's and may
/// narrow them to one user with `user_id`.
#[utoipa::path(get, path = "/scans", tag = "scans", params(ListQuery),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "A page of scans, newest first", body = ScanList),
        (status = 400, description = "Unparsable query or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`user_id` names another user and the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid limit, offset or user_id (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_scans(
    caller: Caller,
    db: Db,
    q: web::Query<ListQuery>,
) -> Result<web::Json<ScanList>> {
    let Listing {
        scope,
        limit,
        offset,
    } = q.resolve(&caller).map_err(|e| match e {
        ListError::Invalid(errors) => Error::Validation(errors),
        ListError::Forbidden => {
            Error::Forbidden("only an admin may list another user's scans (user_id)")
        }
    })?;
    let (scans, total) = service::list(db.get_ref(), scope, limit, offset).await?;
    Ok(web::Json(ScanList {
        items: scans.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

/// One scan: the caller's own, or any for an admin. Another user's scan is a
/// 404, exactly like an id that does not exist.
#[utoipa::path(get, path = "/scans/{id}", tag = "scans", params(("id" = Uuid, Path, description = "Scan id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The scan", body = ScanResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such scan, one of another user, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_scan(
    caller: Caller,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<ScanResponse>> {
    let scan = service::get(db.get_ref(), id.into_inner(), Scope::of(&caller)).await?;
    Ok(web::Json(scan.into()))
}

/// This service's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The scanner service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "gatehouse scanner service", version = "0.1.0",
        description = include_str!("openapi.md")),
    paths(create_scan, list_scans, get_scan,
        common::http::healthz, common::http::readyz, openapi_json),
    components(schemas(Problem, FieldError, Health, ScanResponse, ScanList, CreateScanRequest,
        Report, Hop, HeaderChecks, HeaderCheck, HeaderState, CookieCheck, Banner, Grade)),
    modifiers(&GatewayProofScheme, &TextInputErrors),
    tags(
        (name = "scans", description = "HTTP security scans: the caller's own (all for admins)"),
        (name = "health", description = "Probes and metadata"),
    )
)]
pub struct ApiDoc;
