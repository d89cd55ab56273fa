//! The orders service's schema: orders, each owned by the user who placed it.
//! `user_id` is the users service's id, but there is no foreign key: a service
//! never reads or references another service's tables.

use sea_orm_migration::prelude::*;

mod m20261123_000001_create_orders;

crate::migrator!(
    "seaql_migrations_orders",
    [m20261123_000001_create_orders::Migration]
);
