//! Second factors at login: the challenges between a login's two steps
//! (a random token, stored only as its SHA-256 hash, bound to the user and
//! the client's address, for minutes, used once), and the authentication
//! methods each session was started with (`amr`), which its refreshed
//! access tokens keep.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MfaChallenges {
    Table,
    Id,
    /// SHA-256 of the challenge token, hex.
    TokenHash,
    UserId,
    /// The canonical username: the key of the login lockout.
    Username,
    /// The client address the password step came from.
    Client,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum SessionFamilies {
    Table,
    /// Space-separated RFC 8176 methods (`pwd`, `pwd otp`).
    Amr,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenges::Table)
                    .col(uuid(MfaChallenges::Id).primary_key())
                    .col(string_len(MfaChallenges::TokenHash, 64).unique_key())
                    .col(uuid(MfaChallenges::UserId))
                    .col(string_len(MfaChallenges::Username, 64))
                    .col(string_len(MfaChallenges::Client, 64))
                    .col(timestamp_with_time_zone(MfaChallenges::CreatedAt))
                    .col(timestamp_with_time_zone(MfaChallenges::ExpiresAt))
                    .col(timestamp_with_time_zone_null(MfaChallenges::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mfa_challenges_expires")
                    .table(MfaChallenges::Table)
                    .col(MfaChallenges::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SessionFamilies::Table)
                    .add_column(string_len(SessionFamilies::Amr, 64).default("pwd"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SessionFamilies::Table)
                    .drop_column(SessionFamilies::Amr)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(MfaChallenges::Table).to_owned())
            .await
    }
}
