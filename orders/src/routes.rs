//! HTTP handlers: extract -> call a `service` function -> map to a DTO.
//! Every handler takes the caller first, so a request without a valid gateway
//! proof is refused (401) before its input is looked at.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use common::http::{GatewayProofScheme, Health, TextInputErrors};
use common::identity::{Admin, Caller};
use common::{FieldError, Problem};
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::domain::{NewOrder, Scope, Status};
use crate::dto::{CreateOrderRequest, ListQuery, OrderList, OrderResponse};
use crate::error::{Error, Result};
use crate::service;
use common::listing::{ListError, Listing};

type Db = web::Data<DatabaseConnection>;

/// Mount the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/orders").get(list_orders).post(create_order))
        .service(web::resource("/orders/{id}").get(get_order))
        .service(web::resource("/orders/{id}/cancel").post(cancel_order))
        .service(web::resource("/orders/{id}/confirm").post(confirm_order))
        .service(web::resource("/openapi.json").get(openapi_json))
        .configure(common::http::health_routes);
}

/// Place an order owned by the caller; it starts `pending`.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrderRequest,
    security(("gateway_proof" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the new order", body = OrderResponse,
            headers(("location" = String, description = "Path of the new order"))),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed JSON, or invalid, missing or unknown fields (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_order(
    caller: Caller,
    db: Db,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse> {
    let new = NewOrder::parse(&body)?;
    let order = service::create(db.get_ref(), caller.id, new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/orders/{}", order.id)))
        .json(OrderResponse::from(order)))
}

/// List the caller's orders, newest first; an admin sees everyone's and may
/// narrow them to one user with `user_id`.
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListQuery),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "A page of orders, newest first", body = OrderList),
        (status = 400, description = "Unparsable query or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`user_id` names another user and the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid limit, offset or user_id (all listed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_orders(
    caller: Caller,
    db: Db,
    q: web::Query<ListQuery>,
) -> Result<web::Json<OrderList>> {
    let Listing {
        scope,
        limit,
        offset,
    } = q.resolve(&caller).map_err(|e| match e {
        ListError::Invalid(errors) => Error::Validation(errors),
        ListError::Forbidden => {
            Error::Forbidden("only an admin may list another user's orders (user_id)")
        }
    })?;
    let (orders, total) = service::list(db.get_ref(), scope, limit, offset).await?;
    Ok(web::Json(OrderList {
        items: orders.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

/// One order: the caller's own, or any for an admin. Another user's order is
/// a 404, exactly like an id that does not exist.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = Uuid, Path, description = "Order id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, one of another user, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_order(
    caller: Caller,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderResponse>> {
    let order = service::get(db.get_ref(), id.into_inner(), Scope::of(&caller)).await?;
    Ok(web::Json(order.into()))
}

/// Cancel a pending order: its owner or an admin.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", params(("id" = Uuid, Path, description = "Order id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The cancelled order", body = OrderResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, one of another user, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is not pending (already cancelled or confirmed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_order(
    caller: Caller,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderResponse>> {
    let order = service::cancel(db.get_ref(), id.into_inner(), Scope::of(&caller)).await?;
    Ok(web::Json(order.into()))
}

/// Confirm a pending order (admin). A non-admin gets 403 whatever the id, so
/// it learns nothing about which orders exist.
#[utoipa::path(post, path = "/orders/{id}/confirm", tag = "orders", params(("id" = Uuid, Path, description = "Order id")),
    security(("gateway_proof" = [])),
    responses(
        (status = 200, description = "The confirmed order", body = OrderResponse),
        (status = 401, description = "No valid gateway proof", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is not pending (already cancelled or confirmed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirm_order(
    _admin: Admin,
    db: Db,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderResponse>> {
    let order = service::confirm(db.get_ref(), id.into_inner()).await?;
    Ok(web::Json(order.into()))
}

/// This service's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The orders service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "gatehouse orders service", version = "0.1.0",
        description = "Orders owned by the user who placed them; admins see and confirm all. Reached only through the gateway, which proves the caller's identity."),
    paths(create_order, list_orders, get_order, cancel_order, confirm_order,
        common::http::healthz, common::http::readyz, openapi_json),
    components(schemas(Problem, FieldError, OrderResponse, OrderList, CreateOrderRequest, Status, Health)),
    modifiers(&GatewayProofScheme, &TextInputErrors),
    tags(
        (name = "orders", description = "The caller's orders (all orders for admins)"),
        (name = "health", description = "Probes and metadata"),
    )
)]
pub struct ApiDoc;
