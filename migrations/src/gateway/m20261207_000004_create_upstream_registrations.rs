//! The service registry: targets registered through the admin API (and
//! configured targets it removed), shared by every gateway replica and
//! kept across restarts. One row per upstream and URL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UpstreamRegistrations {
    Table,
    Upstream,
    Url,
    /// The target's name (for an added target).
    Name,
    /// `add` (a registered target) or `remove` (a configured one taken out).
    Kind,
    /// Who made the change (the admin's or client's principal id).
    Actor,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UpstreamRegistrations::Table)
                    .col(string_len(UpstreamRegistrations::Upstream, 128))
                    .col(string_len(UpstreamRegistrations::Url, 512))
                    .col(string_len(UpstreamRegistrations::Name, 128))
                    .col(string_len(UpstreamRegistrations::Kind, 8))
                    .col(string_len_null(UpstreamRegistrations::Actor, 64))
                    .col(timestamp_with_time_zone(UpstreamRegistrations::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(UpstreamRegistrations::Upstream)
                            .col(UpstreamRegistrations::Url),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UpstreamRegistrations::Table).to_owned())
            .await
    }
}
