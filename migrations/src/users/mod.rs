//! The users service's schema: accounts and their roles, and the audit
//! trail of account changes.

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_users;

crate::migrator!(
    "seaql_migrations_users",
    [
        m20261122_000001_create_users::Migration,
        crate::shared::m20261202_000001_create_audit_events::Migration,
    ]
);
