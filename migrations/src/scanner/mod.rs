//! The scanner service's schema: scan results, each owned by the user who
//! asked for it and naming the replica that ran it. `user_id` is the users
//! service's id, but there is no foreign key: a service never reads or
//! references another service's tables.

use sea_orm_migration::prelude::*;

mod m20261123_000001_create_scans;

crate::migrator!(
    "seaql_migrations_scanner",
    [m20261123_000001_create_scans::Migration]
);
