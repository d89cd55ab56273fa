//! Signing in through a trusted identity provider (#32): the sign-ins
//! waiting for the provider's answer, each named by the SHA-256 of its
//! `state`, with the nonce and PKCE verifier the callback needs, where the
//! browser goes afterwards, and when it expires (ten minutes; single use).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProviderLogins {
    Table,
    /// SHA-256 of the `state`, hex.
    StateHash,
    /// The provider's `iss`.
    Issuer,
    Nonce,
    /// The PKCE verifier (RFC 7636), sent with the code.
    CodeVerifier,
    ReturnTo,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProviderLogins::Table)
                    .col(string_len(ProviderLogins::StateHash, 64).primary_key())
                    .col(string_len(ProviderLogins::Issuer, 512))
                    .col(string_len(ProviderLogins::Nonce, 64))
                    .col(string_len(ProviderLogins::CodeVerifier, 128))
                    .col(string_len_null(ProviderLogins::ReturnTo, 4096))
                    .col(timestamp_with_time_zone(ProviderLogins::CreatedAt))
                    .col(timestamp_with_time_zone(ProviderLogins::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provider_logins_expires")
                    .table(ProviderLogins::Table)
                    .col(ProviderLogins::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProviderLogins::Table).to_owned())
            .await
    }
}
