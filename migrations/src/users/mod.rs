//! The users service's schema: accounts and their roles, the audit trail of
//! account changes, the accounts linked to an external identity, and second
//! factors (TOTP secrets and recovery codes).

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_users;
mod m20261202_000002_create_external_identities;
mod m20261207_000003_create_second_factors;

crate::migrator!(
    "seaql_migrations_users",
    [
        m20261122_000001_create_users::Migration,
        crate::shared::m20261202_000001_create_audit_events::Migration,
        m20261202_000002_create_external_identities::Migration,
        m20261207_000003_create_second_factors::Migration,
    ]
);
