//! Orders domain operations. They take a database connection and know nothing
//! about HTTP, so they are tested without a server.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, Set,
};
use uuid::Uuid;

use crate::domain::{NewOrder, Scope, Status};
use crate::entity::order;
use crate::error::{Error, Result};

/// An order as the service returns it.
pub type Order = order::Model;

/// Microseconds: what PostgreSQL keeps, so an order reads back exactly as it
/// was returned when created, on either database.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn visible(scope: Scope) -> Select<order::Entity> {
    match scope {
        Scope::Owner(user_id) => order::Entity::find().filter(order::Column::UserId.eq(user_id)),
        Scope::All => order::Entity::find(),
    }
}

/// Place a pending order owned by `owner`.
#[tracing::instrument(skip_all, fields(user_id = %owner))]
pub async fn create<C: ConnectionTrait>(db: &C, owner: Uuid, new: NewOrder) -> Result<Order> {
    let now = now();
    let order = order::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(owner),
        item: Set(new.item.into_inner()),
        quantity: Set(new.quantity.get()),
        address: Set(new.address.into_inner()),
        status: Set(Status::Pending),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(order)
}

/// One order, if `scope` may see it; otherwise the same `NotFound` as an id
/// that does not exist.
pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid, scope: Scope) -> Result<Order> {
    visible(scope)
        .filter(order::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

/// A page of the orders `scope` may see, newest first (id breaks ties, so
/// pages are stable), and how many there are in all.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    limit: u64,
    offset: u64,
) -> Result<(Vec<Order>, u64)> {
    let query = visible(scope);
    let total = query.clone().count(db).await?;
    let orders = query
        .order_by_desc(order::Column::CreatedAt)
        .order_by_desc(order::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    Ok((orders, total))
}

/// Cancel a pending order that `scope` may see.
#[tracing::instrument(skip(db))]
pub async fn cancel<C: ConnectionTrait>(db: &C, id: Uuid, scope: Scope) -> Result<Order> {
    transition(db, id, scope, Status::Cancelled, "cancelled").await
}

/// Confirm a pending order (the caller has checked for the admin role).
#[tracing::instrument(skip(db))]
pub async fn confirm<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Order> {
    transition(db, id, Scope::All, Status::Confirmed, "confirmed").await
}

/// Move a pending order to `to` with one conditional UPDATE (`... WHERE
/// status = 'pending'`): of two concurrent transitions exactly one changes a
/// row, and the other finds a final state and gets 409. Nothing leaves a final
/// state, so reading the row after the UPDATE shows this transition's result.
async fn transition<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    scope: Scope,
    to: Status,
    action: &'static str,
) -> Result<Order> {
    let mut update = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(order::Column::UpdatedAt, Expr::value(now()))
        .filter(order::Column::Id.eq(id))
        .filter(order::Column::Status.eq(Status::Pending));
    if let Scope::Owner(user_id) = scope {
        update = update.filter(order::Column::UserId.eq(user_id));
    }
    let changed = update.exec(db).await?.rows_affected;
    let order = get(db, id, scope).await?;
    if changed == 0 {
        return Err(Error::not_pending(order.status, action));
    }
    Ok(order)
}
