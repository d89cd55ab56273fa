//! The gateway's schema: refresh-token families (one per login), the
//! refresh tokens in them (stored only as hashes), and revoked access-token
//! ids (the deny list), so sessions and revocations survive a restart; the
//! audit trail of what the gateway sees; machine clients; the challenges
//! between the two steps of a login with a second factor; and the service
//! registry (targets registered at run time); which audiences' tokens a
//! client may introspect; browser sessions, authorization codes, consents
//! and the application fields of clients (the OpenID Connect code flow);
//! the sign-ins waiting for a trusted provider's answer.

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_sessions;
mod m20261202_000002_create_oauth_clients;
mod m20261207_000003_create_mfa_challenges;
mod m20261207_000004_create_upstream_registrations;
mod m20261207_000005_add_client_introspection;
mod m20261207_000006_create_browser_sign_in;
mod m20261207_000007_create_provider_logins;

crate::migrator!(
    "seaql_migrations_gateway",
    [
        m20261122_000001_create_sessions::Migration,
        crate::shared::m20261202_000001_create_audit_events::Migration,
        m20261202_000002_create_oauth_clients::Migration,
        m20261207_000003_create_mfa_challenges::Migration,
        m20261207_000004_create_upstream_registrations::Migration,
        m20261207_000005_add_client_introspection::Migration,
        m20261207_000006_create_browser_sign_in::Migration,
        m20261207_000007_create_provider_logins::Migration,
    ]
);
