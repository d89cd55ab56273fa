//! Request and response bodies of the orders API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Status;
use crate::service::Order;

/// An order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "3c1f7d7e-2b4a-4f0e-9d3a-6a1b2c3d4e5f", "user_id": "0b6f1f0e-6c1e-4b7a-9a53-3f1f0c1f6b2e",
    "item": "Blue widget", "quantity": 3, "address": "1 Main Street\nSpringfield",
    "status": "pending", "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z"
}))]
pub struct OrderResponse {
    pub id: Uuid,
    /// The owner: the user who placed the order.
    pub user_id: Uuid,
    pub item: String,
    pub quantity: i32,
    pub address: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Order> for OrderResponse {
    fn from(o: Order) -> Self {
        Self {
            id: o.id,
            user_id: o.user_id,
            item: o.item,
            quantity: o.quantity,
            address: o.address,
            status: o.status,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// One page of orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    /// Newest first.
    pub items: Vec<OrderResponse>,
    /// Orders matching the query, over all pages.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

pub use common::listing::ListQuery;

/// `POST /orders`. The owner is the caller; the body cannot name one.
///
/// This type documents the body. The handler reads the raw JSON object and
/// `domain::NewOrder::parse` checks it, so that missing, unknown and
/// wrongly-typed fields are listed in one 422 with every other field problem.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"item": "Blue widget", "quantity": 3, "address": "1 Main Street\nSpringfield"}))]
pub struct CreateOrderRequest {
    /// 1-200 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub item: String,
    /// An integer from 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
    /// 1-500 characters (trimmed); line breaks and tabs allowed, no other
    /// control characters.
    #[schema(min_length = 1, max_length = 500)]
    pub address: String,
}
